/* cinch-control: the mesh CA. main() only hands over to ctld (control/ctld.h). */
#include <stdio.h>

#include "ctld.h"

int main(int argc, char **argv)
{
	struct ctld_config cfg;
	int rc = ctld_parse(argc, argv, &cfg);

	if (rc != 0)
		return rc > 0 ? 0 : 2;
	if (cfg.check_only) {
		puts("cinch-control: configuration ok");
		return 0;
	}
	return ctld_run(&cfg);
}
