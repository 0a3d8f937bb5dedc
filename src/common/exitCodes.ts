/** Exit codes of the command line (sysexits.h, as systemd's RestartPreventExitStatus expects). */
export const EX_FAILURE = 1;
export const EX_USAGE = 64;
export const EX_CONFIG = 78;
