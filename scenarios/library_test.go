package scenarios

import (
	"path/filepath"
	"reflect"
	"testing"
)

// TestLibrary: every scenario of the library parses, says in its header what
// it shows, and survives Format unchanged (--emit-scenario can rewrite it).
func TestLibrary(t *testing.T) {
	files, err := scenarioFiles()
	if err != nil || len(files) < 25 {
		t.Fatalf("library has %d scenarios (%v), want at least 25", len(files), err)
	}
	for _, path := range files {
		s, err := ParseFile(path)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(s.Doc) < 40 {
			t.Errorf("%s: header comment %q does not say what the scenario shows", path, s.Doc)
		}
		if len(s.Expects) == 0 {
			t.Errorf("%s: no expectations", path)
		}
		back, err := Parse(path, Format(s))
		if err != nil || !reflect.DeepEqual(stripPos(back), stripPos(s)) {
			t.Errorf("%s: does not survive Format: %v", path, err)
		}
	}
}

// TestLibraryCoversTheLanguage: the library exercises every step verb the
// issue lists and every kind of expectation, so that a runner passing it has
// implemented the whole language.
func TestLibraryCoversTheLanguage(t *testing.T) {
	files, _ := scenarioFiles()
	steps := map[StepKind]bool{}
	conds := map[CondKind]bool{}
	measures := map[Measure]bool{}
	for _, path := range files {
		s, err := ParseFile(path)
		if err != nil {
			continue // TestLibrary reports it
		}
		for _, st := range s.Steps {
			steps[st.Kind] = true
		}
		for _, e := range s.Expects {
			conds[e.Cond] = true
			measures[e.Measure] = true
		}
	}
	for _, k := range []StepKind{Write, Read, Flush, Crash, Restart, Freeze, Stop, Start, Partition, Heal,
		Delay, Flap, CutSerial, RestoreSerial, DiskFail, DiskHeal, ReadErrors, Corrupt, LoseWrites, DiskFull,
		ClockJump, FenceAgent, Primary, Secondary, Connect, Disconnect, Verify, Invalidate, Standby, Online, Takeover} {
		if !steps[k] {
			t.Errorf("no library scenario uses %q", k)
		}
	}
	for k := CondPrimary; k < numCondKinds; k++ {
		if !conds[k] {
			t.Errorf("no library scenario expects %q", k)
		}
	}
	for m := ResyncBytes; m < numMeasures; m++ {
		if !measures[m] {
			t.Errorf("no library scenario measures %q", m)
		}
	}
}

// scenarioFiles are the library's scenarios and those waiting in pending/
// for a fix of the core (they are scenarios all the same: they must parse).
func scenarioFiles() ([]string, error) {
	lib, err := filepath.Glob("library/*.scn")
	if err != nil {
		return nil, err
	}
	pending, err := filepath.Glob("pending/*.scn")
	return append(lib, pending...), err
}
