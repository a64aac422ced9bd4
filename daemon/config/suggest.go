package config

import (
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

// closest returns the choice nearest to s in spelling (ignoring case and
// '-' versus '_'), if one is near enough to be what the user meant.
func closest(s string, choices []string) (string, bool) {
	norm := func(x string) string { return strings.ReplaceAll(strings.ToLower(x), "-", "_") }
	ns := norm(s)
	best, bestD := "", 1<<30
	for _, ch := range choices {
		if d := editDistance(ns, norm(ch)); d < bestD {
			best, bestD = ch, d
		}
	}
	// One edit in three is a typo; more is a different word.
	limit := max(2, len(ns)/3)
	return best, best != "" && bestD <= limit
}

// editDistance is the optimal-string-alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours each cost one.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// knownKeys lists the keys the file format accepts inside the table at
// parent (unindexed, lower case), and for each whether it is a table
// ("[x]"), an array of tables ("[[x]]") or a plain key.
func knownKeys(parent []string) (names []string, shape map[string]string) {
	t := reflect.TypeOf(rawFile{})
	for _, p := range parent {
		f, ok := fieldByTag(t, p)
		if !ok {
			return nil, nil
		}
		t = f.Type
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == reflect.TypeOf(value{}) {
			return nil, nil
		}
	}
	shape = map[string]string{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		names = append(names, tag)
		switch {
		case f.Type.Kind() == reflect.Slice:
			shape[tag] = "[[" + tag + "]]"
		case f.Type != reflect.TypeOf(value{}):
			shape[tag] = "[" + tag + "]"
		default:
			shape[tag] = tag
		}
	}
	return names, shape
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if strings.EqualFold(t.Field(i).Tag.Get("toml"), tag) {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// unknownKeys reports every key the decoder did not use, at each place it
// occurs, with the nearest known key as the suggestion.
func (c *checker) unknownKeys(md toml.MetaData) {
	undecoded := map[string]bool{}
	for _, k := range md.Undecoded() {
		undecoded[strings.ToLower(strings.Join(k, "\x00"))] = true
	}
	if len(undecoded) == 0 {
		return
	}
	seen := map[string]bool{}
	found := map[string]bool{}
	for _, sk := range c.pos.keys {
		joined := strings.Join(sk.path, "\x00")
		if !undecoded[joined] || seen[sk.index] {
			continue
		}
		seen[sk.index] = true
		found[joined] = true
		if parentUndecoded(sk.path, undecoded) {
			continue // the enclosing table is reported instead
		}
		c.unknownKey(sk.index, sk.path)
	}
	// Keys the scanner missed are still reported, without a line.
	for _, k := range md.Undecoded() {
		p := make([]string, len(k))
		for i := range k {
			p[i] = strings.ToLower(k[i])
		}
		if !found[strings.Join(p, "\x00")] && !parentUndecoded(p, undecoded) {
			c.unknownKey(strings.Join(p, "."), p)
		}
	}
}

func parentUndecoded(path []string, undecoded map[string]bool) bool {
	for i := 1; i < len(path); i++ {
		if undecoded[strings.Join(path[:i], "\x00")] {
			return true
		}
	}
	return false
}

func (c *checker) unknownKey(index string, path []string) {
	name := path[len(path)-1]
	parent := path[:len(path)-1]
	known, shape := knownKeys(parent)
	where := "in [" + strings.Join(parent, ".") + "]"
	if len(parent) == 0 {
		where = "at the top level"
	} else if _, s := knownKeys(parent[:len(parent)-1]); s != nil && strings.HasPrefix(s[parent[len(parent)-1]], "[[") {
		where = "in [[" + strings.Join(parent, ".") + "]]"
	}
	what := "key " + quoteList([]string{name})
	if strings.HasSuffix(index, "]") && len(parent) == 0 {
		what = "section [[" + name + "]]"
	} else if len(parent) == 0 {
		what = "section or key " + quoteList([]string{name})
	}
	if best, ok := closest(name, known); ok {
		c.fail(index, "unknown %s %s; write %s instead", what, where, shape[best])
		return
	}
	if len(known) == 0 {
		c.fail(index, "unknown %s %s; remove it", what, where)
		return
	}
	c.fail(index, "unknown %s %s; remove it or use one of: %s", what, where, strings.Join(known, ", "))
}
