# cinch_pkg(<name> <pkg-config module> <header>): one imported target
# Cinch::<name> for a Debian -dev package that ships a pkg-config file.
# We wrap pkg-config instead of writing one find module per library: all of
# these (libuv, protobuf-c, jansson, libcurl-gnutls, nghttp2, yaml, cmocka)
# install a .pc file, and pkg-config is what Debian keeps correct.
find_package(PkgConfig REQUIRED)

function(cinch_pkg name module header)
  pkg_check_modules(PC_${name} REQUIRED IMPORTED_TARGET GLOBAL ${module})
  # Confirm the header is really there (a .pc without -dev headers happens).
  find_path(${name}_HEADER ${header} HINTS ${PC_${name}_INCLUDE_DIRS} REQUIRED)
  add_library(Cinch::${name} ALIAS PkgConfig::PC_${name})
endfunction()
