package scenarios

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestParseErrors: each bad input gives exactly this error, with file, line
// and column, what was expected, what was there and, for a near miss, the
// nearest valid word.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"",
			"t.scn:1:1: expected a cluster line, got end of file"},
		{"# only a comment\n",
			"t.scn:2:1: expected a cluster line, got end of file"},
		{"at 1s crash server1\n",
			"t.scn:1:1: expected the cluster line first, got \"at\""},
		{"cluster server1\n",
			"t.scn:1:16: expected a node name after \"cluster server1\", got end of line"},
		{"cluster server1 server1\n",
			"t.scn:1:17: expected a node name not used yet, got \"server1\" again"},
		{"cluster server1 end\n",
			"t.scn:1:17: expected a node name, got the keyword \"end\""},
		{"cluster 1a b\n",
			"t.scn:1:9: expected a node name (a letter, then letters, digits, '-', '_' or '.'), got \"1a\""},
		{"cluster a b protocol D\n",
			"t.scn:1:22: expected a protocol (A, B or C), got \"D\""},
		{"cluster a b fencing stonit\n",
			"t.scn:1:21: expected a fencing policy (none, stonith or witness), got \"stonit\" (did you mean \"stonith\"?)"},
		{"cluster a b fencing witness\n",
			"t.scn:1:13: expected \"witness <name>\" with \"fencing witness\": the policy needs a third node"},
		{"cluster a b witness w\n",
			"t.scn:1:13: expected a witness only with \"fencing witness\": it has no other use"},
		{"cluster a b after-sb-0pri discard-youngr-primary\n",
			"t.scn:1:27: expected an after-sb-0pri policy (disconnect, discard-zero-changes, discard-younger-primary, discard-older-primary, discard-least-changes, discard-node-a or discard-node-b), got \"discard-youngr-primary\" (did you mean \"discard-younger-primary\"?)"},
		{"cluster a b after-sb-0pri discard-node-c\n",
			"t.scn:1:27: expected an after-sb-0pri policy (disconnect, discard-zero-changes, discard-younger-primary, discard-older-primary, discard-least-changes, discard-node-a or discard-node-b), got \"discard-node-c\" (did you mean \"discard-node-a\"?)"},
		{"cluster a b after-sb-1pri discard-younger-primary\n",
			"t.scn:1:27: expected an after-sb-1pri policy (disconnect, consensus or discard-secondary), got \"discard-younger-primary\""},
		{"cluster a b after-sb-2pri discard-secondary\n",
			"t.scn:1:27: expected an after-sb-2pri policy (\"disconnect\": a running primary's data is never discarded automatically), got \"discard-secondary\""},
		{"cluster a b deadtime 2x\n",
			"t.scn:1:22: expected deadtime (a duration such as 200ms, 2s, 1.5m or 1h), got \"2x\""},
		{"cluster a b deadtime 2\n",
			"t.scn:1:22: expected deadtime (a duration such as 200ms, 2s, 1.5m or 1h), got \"2\" (did you mean \"2s\"?)"},
		{"cluster a b deadtime 0s\n",
			"t.scn:1:22: expected a positive deadtime, got \"0s\""},
		{"cluster a b keepalive 1s deadtime 2s\n",
			"t.scn:1:26: expected deadtime (2s) to exceed 2×keepalive (1s): one lost heartbeat would declare the peer dead"},
		{"cluster a b deadtime 10s warntime 10s\n",
			"t.scn:1:26: expected warntime (10s) from keepalive (1s) up to, not including, deadtime (10s)"},
		{"cluster a b deadtime 10s initdead 5s\n",
			"t.scn:1:26: expected initdead (5s) of at least deadtime (10s): boots are slower than heartbeats"},
		{"cluster a b disk 64MB\n",
			"t.scn:1:18: expected a disk size such as 100 blocks or 4MiB (units B, KiB, MiB, GiB, TiB), got \"64MB\" (did you mean \"64MiB\"?)"},
		{"cluster a b disk 100B\n",
			"t.scn:1:18: expected a disk size in whole 4 KiB blocks, got \"100B\""},
		{"cluster a b disk 10 blokcs\n",
			"t.scn:1:21: expected \"blocks\", got \"blokcs\" (did you mean \"blocks\"?)"},
		{"cluster a b group \"ip:10.0.0.5 fs:/x\"\n",
			"t.scn:1:20: expected an address with prefix length such as ip:192.168.1.5/24, got \"ip:10.0.0.5\""},
		{"cluster a b group \"ip:10.0.0.5/24 fss:/x\"\n",
			"t.scn:1:35: expected a resource such as \"ip:192.168.1.5/24\", \"fs:/replicated\" or \"service:sendmail\", got \"fss:/x\" (did you mean \"fs:/x\"?)"},
		{"cluster a b group \"ip:10.0.0.5/24 fs:x\"\n",
			"t.scn:1:35: expected a clean absolute mount point such as fs:/replicated, got \"fs:x\""},
		{"cluster a b group \"ip:10.0.0.5/24\n",
			"t.scn:1:19: expected a closing \" before the end of the line"},
		{"cluster a b deadtime 5s deadtime 6s\n",
			"t.scn:1:25: expected each option once, got a second \"deadtime\" (the first is at column 13)"},
		{"cluster a b auto_failback yes\n",
			"t.scn:1:27: expected auto_failback (\"on\" or \"off\"), got \"yes\""},
		{"cluster a b\ncluster a b\n",
			"t.scn:2:1: expected one cluster line, got a second (the first is on line 1)"},
		{"cluster a b\nat 5s crash a\nat 3s restart a\n",
			"t.scn:3:4: expected a time at or after 5s (the \"at\" on line 2), got \"3s\""},
		{"cluster a b\nat 5s crash c\n",
			"t.scn:2:13: expected a node (a or b), got \"c\""},
		{"cluster a b\nat 5s crash\n",
			"t.scn:2:12: expected a node after \"at 5s crash\", got end of line"},
		{"cluster a b\nat 5s crash a b\n",
			"t.scn:2:15: expected end of line after \"at 5s crash a\", got \"b\""},
		{"cluster a b\nat 5s partition a a\n",
			"t.scn:2:19: expected a node other than \"a\": a link joins two nodes"},
		{"cluster a b\nat 5s partition a b oneway\n",
			"t.scn:2:21: expected \"one-way\" or end of line after \"at 5s partition a b\", got \"oneway\" (did you mean \"one-way\"?)"},
		{"cluster a b\nat 5s crsh a\n",
			"t.scn:2:7: expected a step such as write, crash, partition or primary, got \"crsh\" (did you mean \"crash\"?)"},
		{"cluster a b\ncrash a\n",
			"t.scn:2:1: expected \"at <time> crash ...\", got \"crash\" without a time"},
		{"cluster a b\nat 5 crash a\n",
			"t.scn:2:4: expected a time since the start (a duration such as 200ms, 2s, 1.5m or 1h), got \"5\" (did you mean \"5s\"?)"},
		{"cluster a b\nat 1m10s crash a\n",
			"t.scn:2:4: expected a time since the start (a duration such as 200ms, 2s, 1.5m or 1h), got \"1m10s\" (did you mean \"70s\"?)"},
		{"cluster a b\nat 5s for 2s corrupt a blocks 1\n",
			"t.scn:2:7: expected no \"for\" on \"corrupt\": corrupted blocks stay corrupted until rewritten"},
		{"cluster a b\nat 5s flap a b every 1s down 200ms\n",
			"t.scn:2:7: expected \"at <time> for <duration> flap ...\", got no \"for\": flapping needs a window"},
		{"cluster a b\nat 5s for 10s flap a b every 1s down 1s\n",
			"t.scn:2:38: expected an outage shorter than the period (1s), got \"1s\""},
		{"cluster a b\nat 5s restart a\n",
			"t.scn:2:7: expected a to be down for \"restart\", but it is up since the start"},
		{"cluster a b\nat 5s thaw a\n",
			"t.scn:2:7: expected a to be frozen for \"thaw\", but it is up since the start"},
		{"cluster a b\nat 5s crash a\nat 6s primary a\n",
			"t.scn:3:7: expected a to be up for \"primary\", but it is down after \"crash\" on line 2"},
		{"cluster a b\nat 5s for 10s crash a\nat 8s restart a\n",
			"t.scn:2:15: expected a to be down for \"restart\" (the end of its \"for\" window, at 15s), but it is up after \"restart\" on line 3"},
		{"cluster a b\nat 5s cut-serial\nat 6s cut-serial\n",
			"t.scn:3:7: expected the serial cable to be whole for \"cut-serial\", but it is already cut (line 2)"},
		{"cluster a b serial off\nat 5s cut-serial\n",
			"t.scn:2:7: expected a serial cable for \"cut-serial\", but the cluster line says \"serial off\""},
		{"cluster a b\nat 5s fence-agent a fail\n",
			"t.scn:2:7: expected \"fencing stonith\" for \"fence-agent\": with fencing none no agent runs"},
		{"cluster a b witness w fencing witness\nat 5s write 10 blocks on w\n",
			"t.scn:2:26: expected a data node (a or b), got the witness \"w\": it has no disk and never runs the group"},
		{"cluster a b\nat 5s write 10 blocks on a b\n",
			"t.scn:2:28: expected end of line after \"at 5s write 10 blocks on a\", got \"b\""},
		{"cluster a b\nat 5s write 10\n",
			"t.scn:2:15: expected \"blocks\" after \"at 5s write 10\", got end of line"},
		{"cluster a b\nat 5s write blocks 5000\n",
			"t.scn:2:20: expected a block range within the disk (blocks 0-4095), got \"5000\""},
		{"cluster a b\nat 5s write blocks 9-3\n",
			"t.scn:2:20: expected a block range whose last block is not before its first, got \"9-3\""},
		{"cluster a b\nat 5s drop 130% a b\n",
			"t.scn:2:12: expected a percentage from 0% to 100%, got \"130%\""},
		{"cluster a b\nat 5s clock-drift a 200\n",
			"t.scn:2:21: expected a drift from -100000ppm to 100000ppm such as 200ppm, got \"200\""},
		{"cluster a b\nat 5s resource-fail a x start\n",
			"t.scn:2:23: expected a resource of the group, got \"x\", but the cluster line has no group"},
		{"cluster a b group service:web\nat 5s resource-fail a service:wbe start\n",
			"t.scn:2:23: expected a resource of the group (service:web), got \"service:wbe\" (did you mean \"service:web\"?)"},
		{"cluster a b\nat 5s end\nat 6s crash a\n",
			"t.scn:3:1: expected no step after the end of the run (line 2), got \"at\""},
		{"cluster a b\nat 5s end\nexpect primary a within 2s\n",
			"t.scn:3:8: expected \"primary\" to be judged by the end of the run (5s, line 2), but its window ends at 7s"},
		{"cluster a b\nexpect primary c\n",
			"t.scn:2:16: expected a data node (a or b), got \"c\""},
		{"cluster a b\nexpect primry a\n",
			"t.scn:2:8: expected a condition such as primary, disks-identical or no-split-brain, got \"primry\" (did you mean \"primary\"?)"},
		{"cluster a b\nexpect\n",
			"t.scn:2:7: expected a condition such as primary, disks-identical or no-split-brain after \"expect\", got end of line"},
		{"cluster a b\nexpect no-failover within 5s\n",
			"t.scn:2:20: expected no \"within\" with \"no-failover\": it must hold over a span: use \"for <duration>\" or nothing"},
		{"cluster a b\nexpect failover for 5s\n",
			"t.scn:2:17: expected no \"for\" with \"failover\": it is an event: use \"within <duration>\" or nothing"},
		{"cluster a b\nexpect at 5s failover\n",
			"t.scn:2:8: expected no \"at\" with \"failover\": it is an event: use \"within <duration>\" or nothing"},
		{"cluster a b\nexpect at 5s primary a within 3s\n",
			"t.scn:2:24: expected end of line, got \"within\": \"at\" already fixes the instant"},
		{"cluster a b\nexpect state a disk uptodat\n",
			"t.scn:2:21: expected a disk state (Diskless, Attaching, Failed, Inconsistent, Outdated, DUnknown, Consistent or UpToDate), got \"uptodat\" (did you mean \"UpToDate\"?)"},
		{"cluster a b\nexpect state a\n",
			"t.scn:2:15: expected role, disk, conn or peer-disk after \"expect state a\", got end of line"},
		{"cluster a b\nexpect state a disk UpToDate disk Outdated\n",
			"t.scn:2:30: expected each of role, disk, conn and peer-disk once, got a second \"disk\""},
		{"cluster a b\nexpect resync-bytes =< 4MiB\n",
			"t.scn:2:21: expected a comparison (<=, <, ==, >= or >), got \"=<\""},
		{"cluster a b\nexpect resync-bytes <= 4MB\n",
			"t.scn:2:24: expected a size such as 4MiB or 100 blocks (units B, KiB, MiB, GiB, TiB), got \"4MB\" (did you mean \"4MiB\"?)"},
		{"cluster a b\nexpect primary a within\n",
			"t.scn:2:24: expected a window length after \"expect primary a within\", got end of line"},
		{"cluster a b\nfoo\nbar\nbaz\nqux\nquux\ncorge\ngrault\ngarply\nwaldo\nfred\nplugh\nxyzzy\n",
			"t.scn:2:1: expected \"cluster\", \"at\" or \"expect\", got \"foo\"\nt.scn:3:1: expected \"cluster\", \"at\" or \"expect\", got \"bar\"\nt.scn:4:1: expected \"cluster\", \"at\" or \"expect\", got \"baz\"\nt.scn:5:1: expected \"cluster\", \"at\" or \"expect\", got \"qux\"\nt.scn:6:1: expected \"cluster\", \"at\" or \"expect\", got \"quux\"\nt.scn:7:1: expected \"cluster\", \"at\" or \"expect\", got \"corge\"\nt.scn:8:1: expected \"cluster\", \"at\" or \"expect\", got \"grault\"\nt.scn:9:1: expected \"cluster\", \"at\" or \"expect\", got \"garply\"\nt.scn:10:1: expected \"cluster\", \"at\" or \"expect\", got \"waldo\"\nt.scn:11:1: expected \"cluster\", \"at\" or \"expect\", got \"fred\"\nt.scn:12:1: too many errors; fix the ones above first"},
		{"cluster a b\nexpect disks-identical at end\n",
			"t.scn:2:24: expected \"at\" right after \"expect\" (as in \"expect at end disks-identical\"), got it after the condition"},
		{"cluster a b\nat 1s crash a\nat 2s restart a\nat 3s for 10s crash b\nat 5s restart b\n",
			"t.scn:4:15: expected b to be down for \"restart\" (the end of its \"for\" window, at 13s), but it is up after \"restart\" on line 5"},
		{"cluster a b\nat 0s for 1h flap a b every 1s down 1ms\nat 0s for 2h flap a b every 1s down 1ms\n",
			"t.scn:3:37: expected at most 10000 flaps in the whole scenario, got 7200 more here: write a longer period or a shorter window"},
		{"at 1s crash a\nat 2s crash b\ncluster a b\nat 3s crsh b\n",
			"t.scn:1:1: expected the cluster line first, got \"at\"\n" +
				"t.scn:4:7: expected a step such as write, crash, partition or primary, got \"crsh\" (did you mean \"crash\"?)"},
	} {
		_, err := Parse("t.scn", []byte(tc.src))
		if err == nil {
			t.Errorf("%q: no error, want %s", tc.src, tc.want)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("%q:\n got: %s\nwant: %s", tc.src, err, tc.want)
		}
	}
}

// TestErrorsCollected: one pass reports every bad line, in file order, each
// with its own position and suggestion.
func TestErrorsCollected(t *testing.T) {
	src := strings.Join([]string{
		"# three mistakes",
		"cluster server1 server2 fencing stonith",
		"at 5s crsh server1",              // unknown verb
		"at 3s crash server1",             // time going backwards
		"at 6s crash server3",             // unknown node
		"expect primary server2 within 5", // bad duration
		"at 7s cut-serial",                // fine
	}, "\n")
	_, err := Parse("lib/x.scn", []byte(src))
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("err = %v, want an ErrorList", err)
	}
	want := ErrorList{
		{Pos{"lib/x.scn", 3, 7}, `expected a step such as write, crash, partition or primary, got "crsh"`, "crash"},
		{Pos{"lib/x.scn", 4, 4}, `expected a time at or after 5s (the "at" on line 3), got "3s"`, ""},
		{Pos{"lib/x.scn", 5, 13}, `expected a node (server1 or server2), got "server3"`, "server1"},
		{Pos{"lib/x.scn", 6, 31}, `expected a window length (a duration such as 200ms, 2s, 1.5m or 1h), got "5"`, "5s"},
	}
	if !reflect.DeepEqual(list, want) {
		t.Fatalf("got:\n%v\nwant:\n%v", list, want)
	}
	if got := list[0].Error(); got != `lib/x.scn:3:7: expected a step such as write, crash, partition or primary, got "crsh" (did you mean "crash"?)` {
		t.Errorf("Error() = %s", got)
	}
}

// TestErrorsCapped: a file that is not a scenario at all stops after
// MaxErrors, saying so.
func TestErrorsCapped(t *testing.T) {
	_, err := Parse("t.scn", []byte(strings.Repeat("nonsense\n", 50)))
	list := err.(ErrorList)
	if len(list) != MaxErrors+1 || !strings.HasPrefix(list[MaxErrors].Msg, "too many errors") {
		t.Fatalf("got %d errors, the last %v; want %d then \"too many errors\"", len(list), list[len(list)-1], MaxErrors)
	}
}
