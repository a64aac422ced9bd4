// Command tandem is the one binary: the simulator today; the daemon, status
// and admin verbs as they land. It only wires packages together.
package main

import (
	"fmt"
	"os"
)

const usage = `usage: tandem <command> [flags]

commands:
  sim     run the simulated cluster for one seed and print its trace
  scenario run FILE...  run scenario files in the simulator ([--seed N] [--seeds K] [-v])
  demo    the tutorial's failover story, played in the simulator
  create-md  write fresh replication metadata on a disk (--disk PATH [--meta PATH] [--node ID] [--force])
  dump-md    print a disk's replication metadata (--disk PATH [--meta PATH])
  check   check the configuration file (--config FILE [--node NAME])
  import  convert ha.cf, haresources, authkeys and drbd.conf into a configuration file
  daemon  run this node (--config FILE [--node NAME] [--log-level LEVEL])
  status  show the running node's state (--json, --verbose)
  events  stream the running node's state changes
  primary [--force] | secondary | connect [--discard-my-data] | disconnect |
  verify | invalidate | detach | pause-sync | resume-sync |
  standby | online | takeover | cleanup
          admin verbs, sent to the running daemon's control socket
  help    this text

Run 'tandem <command> -h' for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var code int
	switch os.Args[1] {
	case "sim":
		code = runSim(os.Args[2:], os.Stdout, os.Stderr)
	case "scenario":
		code = runScenario(os.Args[2:], os.Stdout, os.Stderr)
	case "demo":
		code = runDemoCommand(os.Args[2:], os.Stdout, os.Stderr)
	case "create-md", "dump-md":
		code = runMD(os.Args[1], os.Args[2:], os.Stdout, os.Stderr)
	case "check":
		code = runCheck(os.Args[2:], os.Stdout, os.Stderr)
	case "import":
		code = runImport(os.Args[2:], os.Stdout, os.Stderr)
	case "daemon":
		code = runDaemon(os.Args[2:], os.Stdout, os.Stderr)
	case "status":
		code = runStatus(os.Args[2:], os.Stdout, os.Stderr)
	case "events":
		code = runEvents(os.Args[2:], os.Stdout, os.Stderr)
	case "help", "-h", "--help":
		fmt.Fprint(os.Stdout, usage)
	default:
		if isAdminVerb(os.Args[1]) {
			code = runAdmin(os.Args[1], os.Args[2:], os.Stdout, os.Stderr)
			break
		}
		fmt.Fprintf(os.Stderr, "tandem: unknown command %q\n\n%s", os.Args[1], usage)
		code = 2
	}
	os.Exit(code)
}
