package sim

import (
	"flag"
	"os"
	"testing"
)

// TestMain pins rapid's seed unless one is given (-rapid.seed) or
// TANDEM_RAPID_RANDOM=1 asks for fresh cases: `make test` then explores the
// same generated cases on every machine, so a red CI is reproducible and
// never a dice roll; `make soak` explores new ones.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("rapid.seed"); f != nil && f.Value.String() == "0" && os.Getenv("TANDEM_RAPID_RANDOM") != "1" {
		if err := f.Value.Set("20261125"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
