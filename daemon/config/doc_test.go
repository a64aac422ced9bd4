package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestDocExampleIsTutorial: the example in config.md is testdata/tutorial.toml
// (which TestTutorialLoads loads), so the documentation's example works.
func TestDocExampleIsTutorial(t *testing.T) {
	doc, err := os.ReadFile("config.md")
	if err != nil {
		t.Fatal(err)
	}
	tut, err := os.ReadFile("testdata/tutorial.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```toml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("config.md has no ```toml example")
	}
	if example != string(tut) {
		t.Error("config.md's example differs from testdata/tutorial.toml; copy one into the other")
	}
}

// TestDocCoversEveryKey: config.md documents every key the format accepts.
func TestDocCoversEveryKey(t *testing.T) {
	doc, err := os.ReadFile("config.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []any{rawCluster{}, rawNode{}, rawHeartbeat{}, rawReplication{}, rawResource{}, rawFence{}} {
		rt := reflect.TypeOf(typ)
		for i := 0; i < rt.NumField(); i++ {
			key := rt.Field(i).Tag.Get("toml")
			if !strings.Contains(string(doc), "`"+key+"`") {
				t.Errorf("config.md does not document %s (%s)", key, rt.Name())
			}
		}
	}
	for _, section := range []string{"[cluster]", "[[node]]", "[[heartbeat]]", "[replication]", "[[resource]]", "[[fence]]"} {
		if !strings.Contains(string(doc), "## `"+section+"`") {
			t.Errorf("config.md has no section for %s", section)
		}
	}
}
