package config

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// checker collects errors with their lines.
type checker struct {
	file string
	pos  *positions
	errs []*Error
	// keys already reported, so the core's own validation (run last, as a
	// backstop) does not repeat what a check here said better.
	reported map[string]bool
	// paths (indexed, lower case) already reported, so that one mistake
	// does not cascade into others about the same value.
	failedPaths map[string]bool
}

func (c *checker) failed(path string) bool { return c.failedPaths[strings.ToLower(path)] }

// fail reports what is wrong at path, an indexed key like "node[1].disk".
func (c *checker) fail(path, format string, args ...any) {
	e := &Error{File: c.file, Line: c.pos.lineOf(path), Key: plainKey(path), Msg: fmt.Sprintf(format, args...)}
	c.errs = append(c.errs, e)
	c.reported[e.Key] = true
	if c.failedPaths == nil {
		c.failedPaths = map[string]bool{}
	}
	c.failedPaths[strings.ToLower(path)] = true
}

func (c *checker) sorted() []*Error {
	sort.SliceStable(c.errs, func(i, j int) bool {
		li, lj := c.errs[i].Line, c.errs[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0 // errors without a line come last
		}
		return li < lj
	})
	return c.errs
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

// plainKey drops array indices: "node[1].disk" → "node.disk".
func plainKey(path string) string { return indexRE.ReplaceAllString(path, "") }

// leaf is the last component of a path: what the user typed before '='.
func leaf(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// tomlText writes a raw value back the way it would look in the file.
func tomlText(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = tomlText(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		return "a table"
	case time.Time:
		return x.Format(time.RFC3339)
	}
	return fmt.Sprint(v)
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "number"
	case float64:
		return "fractional number"
	case bool:
		return "boolean"
	case []any:
		return "list"
	case map[string]any:
		return "table"
	}
	return "date"
}

// str reads a string; ok is false when unset or not a string (reported).
func (c *checker) str(f value, path string) (string, bool) {
	if !f.set {
		return "", false
	}
	s, ok := f.v.(string)
	if !ok {
		switch f.v.(type) {
		case map[string]any, []any:
			c.fail(path, "%s is a %s, not a string; write %s = \"...\"", leaf(path), typeName(f.v), leaf(path))
		default:
			c.fail(path, "%s is a %s, not a string; write %s = %q instead", tomlText(f.v), typeName(f.v), leaf(path), fmt.Sprint(f.v))
		}
		return "", false
	}
	return s, true
}

// word reads a string that must not be empty nor contain blanks (names,
// devices, paths).
func (c *checker) word(f value, path, what, example string) (string, bool) {
	s, ok := c.str(f, path)
	if !ok {
		return "", false
	}
	if s == "" || strings.ContainsAny(s, " \t\n") {
		c.fail(path, "%q is not a %s; write %s = %q", s, what, leaf(path), example)
		return "", false
	}
	return s, true
}

// path reads an absolute file path.
func (c *checker) absPath(f value, path, example string) (string, bool) {
	s, ok := c.word(f, path, "path", example)
	if ok && !strings.HasPrefix(s, "/") {
		c.fail(path, "%q is not an absolute path; write %s = %q", s, leaf(path), example)
		return "", false
	}
	return s, ok
}

// oneOf reads a string that must be one of choices.
func (c *checker) oneOf(f value, path string, choices ...string) (string, bool) {
	s, ok := c.str(f, path)
	if !ok {
		return "", false
	}
	for _, ch := range choices {
		if s == ch {
			return s, true
		}
	}
	c.fail(path, "%q is not one of %s; write %s = %q", s, quoteList(choices), leaf(path), nearest(s, choices, choices[0]))
	return "", false
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// nearest is the choice closest in spelling to s, or def if none is close.
func nearest(s string, choices []string, def string) string {
	if best, ok := closest(s, choices); ok {
		return best
	}
	return def
}

// dur reads a duration string like "2s"; zero is allowed only if zeroOK.
func (c *checker) dur(f value, path string, zeroOK bool) (time.Duration, bool) {
	if !f.set {
		return 0, false
	}
	k := leaf(path)
	switch x := f.v.(type) {
	case int64:
		c.fail(path, "%d has no unit; write %s = \"%ds\" (units: ms, s, m, h)", x, k, x)
		return 0, false
	case float64:
		c.fail(path, "%v has no unit; write %s = \"%vs\" (units: ms, s, m, h)", x, k, x)
		return 0, false
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			if n, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
				c.fail(path, "%q has no unit; write %s = \"%vs\" (units: ms, s, m, h)", x, k, n)
			} else if d, err := time.ParseDuration(strings.Join(strings.Fields(x), "")); err == nil {
				c.fail(path, "%q is not a duration (no blanks inside); write %s = %q", x, k, d.String())
			} else {
				c.fail(path, "%q is not a duration; write %s = \"2s\" or \"500ms\" (units: ms, s, m, h)", x, k)
			}
			return 0, false
		}
		if d < 0 {
			c.fail(path, "%q is negative; write %s = %q", x, k, (-d).String())
			return 0, false
		}
		if d == 0 && !zeroOK {
			c.fail(path, "%q must be more than zero; write a positive duration like %s = \"2s\"", x, k)
			return 0, false
		}
		return d, true
	}
	c.fail(path, "%s is a %s, not a duration; write %s = \"2s\"", tomlText(f.v), typeName(f.v), k)
	return 0, false
}

// integer reads a whole number in lo..hi.
func (c *checker) integer(f value, path string, lo, hi int64) (int64, bool) {
	if !f.set {
		return 0, false
	}
	k := leaf(path)
	var n int64
	switch x := f.v.(type) {
	case int64:
		n = x
	case string:
		if v, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
			c.fail(path, "%q is a string; write %s = %d without quotes", x, k, v)
		} else {
			c.fail(path, "%q is not a whole number; write %s = %d", x, k, lo)
		}
		return 0, false
	case float64:
		c.fail(path, "%v is not a whole number; write %s = %d", x, k, int64(math.Round(x)))
		return 0, false
	default:
		c.fail(path, "%s is a %s, not a whole number; write %s = %d", tomlText(f.v), typeName(f.v), k, lo)
		return 0, false
	}
	if n < lo || n > hi {
		c.fail(path, "%d is outside %d..%d; write a number in that range", n, lo, hi)
		return 0, false
	}
	return n, true
}

// boolean reads true or false, and recognises on/off and yes/no enough to
// say what to write.
func (c *checker) boolean(f value, path string) (bool, bool) {
	if !f.set {
		return false, false
	}
	if b, ok := f.v.(bool); ok {
		return b, true
	}
	want := "true or false"
	if s, ok := f.v.(string); ok {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "on", "yes", "true", "1", "y":
			want = "true"
		case "off", "no", "false", "0", "n":
			want = "false"
		}
	}
	c.fail(path, "%s is a %s, not a boolean; write %s = %s (no quotes)", tomlText(f.v), typeName(f.v), leaf(path), want)
	return false, false
}

// strList reads a list of strings.
func (c *checker) strList(f value, path string) ([]string, bool) {
	if !f.set {
		return nil, false
	}
	switch x := f.v.(type) {
	case string:
		c.fail(path, "%q is a string, not a list; write %s = [%q]", x, leaf(path), x)
		return nil, false
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				c.fail(path, "%s in the list is a %s; write it as a string: %q", tomlText(e), typeName(e), fmt.Sprint(e))
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	c.fail(path, "%s is a %s, not a list of strings; write %s = [\"a\", \"b\"]", tomlText(f.v), typeName(f.v), leaf(path))
	return nil, false
}

// strMap reads a table of scalars as strings, keys sorted. Numbers and
// booleans are taken as written, because option tables pass strings on.
func (c *checker) strMap(f value, path string) (keys []string, m map[string]string, ok bool) {
	if !f.set {
		return nil, nil, false
	}
	t, isMap := f.v.(map[string]any)
	if !isMap {
		c.fail(path, "%s is a %s, not a table; write %s = { key = \"value\" }", tomlText(f.v), typeName(f.v), leaf(path))
		return nil, nil, false
	}
	m = map[string]string{}
	ok = true
	for k, v := range t {
		switch x := v.(type) {
		case string:
			m[k] = x
		case int64, float64, bool:
			m[k] = fmt.Sprint(x)
		default:
			c.fail(path+"."+k, "%s is a %s; write %s = \"...\" (a string)", tomlText(v), typeName(v), k)
			ok = false
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, m, ok
}

// parseBytes reads a size with a binary unit: "512K", "10M", "8GiB", "1T".
// A bare number is refused: DRBD reads it as sectors in one place and KiB
// in another, and guessing wrong by 512× is worse than asking.
func parseBytes(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9') {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q does not start with a number", s)
	}
	n, err := strconv.ParseUint(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %v", s, err)
	}
	unit := strings.ToUpper(strings.TrimSpace(t[i:]))
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "IB"), "B")
	shift := map[string]uint{"K": 10, "M": 20, "G": 30, "T": 40}
	if unit == "" {
		return 0, fmt.Errorf("%q has no unit", s)
	}
	sh, ok := shift[unit]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit", s)
	}
	if n > math.MaxUint64>>sh {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n << sh, nil
}

// formatBytes writes n in the largest unit that divides it.
func formatBytes(n uint64) string {
	for _, u := range []struct {
		sh   uint
		name string
	}{{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
		if n != 0 && n%(1<<u.sh) == 0 {
			return fmt.Sprintf("%d%s", n>>u.sh, u.name)
		}
	}
	return fmt.Sprintf("%dK", (n+1023)/1024)
}
