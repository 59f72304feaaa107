/* agentd: the `cinch-agent run` command in static mode (argv[0] is "run").
 * Exit status: 0 after SIGTERM/SIGINT, 1 when start-up failed (the log
 * says why), 2 on a usage error. */
#ifndef CINCH_AGENT_AGENTD_H
#define CINCH_AGENT_AGENTD_H

int agentd_main(int argc, char **argv);

#endif
