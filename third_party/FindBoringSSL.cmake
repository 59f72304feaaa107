# FindBoringSSL: Debian's android-libboringssl-dev.
#
# Headers live in /usr/include/android and the libraries in
# /usr/lib/<multiarch>/android, outside the default search paths on purpose:
# they must never be confused with OpenSSL's libssl-dev, which may be
# installed on the same machine. We check OPENSSL_IS_BORINGSSL in the headers
# found and fail the configure step otherwise, and callers link with an rpath
# (CMake adds it for full library paths outside the implicit directories).
#
# Provides BoringSSL::crypto, BoringSSL::ssl and BoringSSL_PACKAGE_VERSION
# (the Debian package version, since BoringSSL itself has no release number).

include(CheckSymbolExists)

find_path(BoringSSL_INCLUDE_DIR openssl/base.h
  PATHS /usr/include/android NO_DEFAULT_PATH)
find_library(BoringSSL_CRYPTO_LIBRARY crypto
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android NO_DEFAULT_PATH)
find_library(BoringSSL_SSL_LIBRARY ssl
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android NO_DEFAULT_PATH)

if(BoringSSL_INCLUDE_DIR)
  set(CMAKE_REQUIRED_INCLUDES ${BoringSSL_INCLUDE_DIR})
  set(CMAKE_REQUIRED_QUIET ON)
  check_symbol_exists(OPENSSL_IS_BORINGSSL "openssl/base.h" BoringSSL_IS_BORINGSSL)
  unset(CMAKE_REQUIRED_INCLUDES)
  unset(CMAKE_REQUIRED_QUIET)
  if(NOT BoringSSL_IS_BORINGSSL)
    message(FATAL_ERROR "${BoringSSL_INCLUDE_DIR}/openssl/base.h is not BoringSSL "
      "(OPENSSL_IS_BORINGSSL undefined): refusing to build against OpenSSL")
  endif()
endif()

execute_process(COMMAND dpkg-query -W "-f=\${Package} \${Version}" android-libboringssl
  OUTPUT_VARIABLE BoringSSL_PACKAGE_VERSION ERROR_QUIET)
if(NOT BoringSSL_PACKAGE_VERSION)
  set(BoringSSL_PACKAGE_VERSION "unknown package")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(BoringSSL REQUIRED_VARS
  BoringSSL_INCLUDE_DIR BoringSSL_CRYPTO_LIBRARY BoringSSL_SSL_LIBRARY BoringSSL_IS_BORINGSSL)

if(BoringSSL_FOUND AND NOT TARGET BoringSSL::crypto)
  add_library(BoringSSL::crypto UNKNOWN IMPORTED)
  set_target_properties(BoringSSL::crypto PROPERTIES
    IMPORTED_LOCATION ${BoringSSL_CRYPTO_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${BoringSSL_INCLUDE_DIR}
    INTERFACE_COMPILE_DEFINITIONS "CINCH_BORINGSSL_PACKAGE=\"${BoringSSL_PACKAGE_VERSION}\"")
  add_library(BoringSSL::ssl UNKNOWN IMPORTED)
  set_target_properties(BoringSSL::ssl PROPERTIES
    IMPORTED_LOCATION ${BoringSSL_SSL_LIBRARY}
    INTERFACE_LINK_LIBRARIES BoringSSL::crypto)
endif()
