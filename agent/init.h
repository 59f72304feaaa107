/* init: the `cinch-agent init` command (argv[0] is "init"). Exit status:
 * 0 done, 1 the rules could not be applied, 2 usage error. */
#ifndef CINCH_AGENT_INIT_H
#define CINCH_AGENT_INIT_H

int init_main(int argc, char **argv);

#endif
