// Package collectorcmd holds what the collector programs (procmond,
// netmond, fsmond) do alike on their command lines: the flags that say
// where the broker is and who the collector is (--socket, --url, --id,
// --heartbeat, --token-file, --token-fd, --conn-fd, -v), reading the
// broker token, connecting to the broker with backoff or taking the
// connection the agent hands over, and running the collector until a
// signal, a shutdown request or the loss of that connection, with the
// same log lines and exit codes: 0 when stopped, 1 on failure, 2 on a
// usage error or an address that cannot work.
//
// Each program adds its own flags, checks what it needs before it waits
// for a broker, and builds its collector in Program.New.
package collectorcmd
