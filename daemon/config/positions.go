package config

import (
	"strconv"
	"strings"
)

// positions maps every key of a TOML document to the line it is on.
//
// BurntSushi/toml keeps key positions to itself, and keys inside arrays of
// tables ([[node]]) carry no index there, so two nodes' "address" would share
// one line. This scanner walks the text once more, after toml.Decode has
// accepted it, and records each key under an indexed path such as
// "node[1].address" (lower case). It only has to find keys in a document
// already known to be valid TOML, so it never reports errors of its own.
type positions struct {
	line map[string]int
	// keys lists every key in document order, for matching the unindexed
	// keys MetaData.Undecoded returns against their occurrences.
	keys []scannedKey
}

type scannedKey struct {
	path  []string // lower case, unindexed: ["node", "adress"]
	index string   // lower case, indexed: "node[1].adress"
	line  int
}

// lineOf returns the line of path or, if path itself is absent (a missing
// key), of its nearest enclosing table; 0 if none is known.
func (p *positions) lineOf(path string) int {
	path = strings.ToLower(path)
	for {
		if l, ok := p.line[path]; ok {
			return l
		}
		// An array of tables as a whole: its first element.
		if l, ok := p.line[path+"[0]"]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
}

type scanner struct {
	s    string
	i    int
	line int
	out  *positions
	// arrays counts the elements of each array of tables, by indexed path.
	arrays map[string]int
}

func scanPositions(data []byte) *positions {
	sc := &scanner{s: string(data), line: 1, out: &positions{line: map[string]int{}}, arrays: map[string]int{}}
	sc.document()
	return sc.out
}

func (sc *scanner) more() bool { return sc.i < len(sc.s) }

func (sc *scanner) peek(prefix string) bool { return strings.HasPrefix(sc.s[sc.i:], prefix) }

// space skips blanks and comments; with newlines, also line ends.
func (sc *scanner) space(newlines bool) {
	for sc.more() {
		switch c := sc.s[sc.i]; {
		case c == ' ' || c == '\t' || c == '\r':
			sc.i++
		case c == '\n' && newlines:
			sc.line++
			sc.i++
		case c == '#':
			for sc.more() && sc.s[sc.i] != '\n' {
				sc.i++
			}
		default:
			return
		}
	}
}

func (sc *scanner) document() {
	var table []string // indexed components of the current table
	for {
		sc.space(true)
		if !sc.more() {
			return
		}
		line := sc.line
		switch {
		case sc.peek("[["):
			sc.i += 2
			keys := sc.key()
			sc.i += 2 // ]]
			table = sc.header(keys, true)
			sc.record(table, line)
		case sc.peek("["):
			sc.i++
			keys := sc.key()
			sc.i++ // ]
			table = sc.header(keys, false)
			sc.record(table, line)
		default:
			keys := sc.key()
			sc.i++ // =
			path := append(append([]string(nil), table...), keys...)
			sc.record(path, line)
			sc.value(path, true)
		}
		// In valid TOML whatever follows on the line is a comment (or
		// the rest of a value with a space in it, like a local datetime).
		for sc.more() && sc.s[sc.i] != '\n' {
			sc.i++
		}
	}
}

// header turns a table header into indexed components: a component that
// names an array of tables refers to its latest element.
func (sc *scanner) header(keys []string, array bool) []string {
	var out []string
	for i, k := range keys {
		out = append(out, k)
		p := strings.Join(out, ".")
		if array && i == len(keys)-1 {
			n := sc.arrays[p]
			sc.arrays[p] = n + 1
			out[len(out)-1] = k + "[" + strconv.Itoa(n) + "]"
		} else if n, ok := sc.arrays[p]; ok {
			out[len(out)-1] = k + "[" + strconv.Itoa(n-1) + "]"
		}
	}
	return out
}

func (sc *scanner) record(indexed []string, line int) {
	idx := strings.ToLower(strings.Join(indexed, "."))
	if _, dup := sc.out.line[idx]; !dup {
		sc.out.line[idx] = line
	}
	plain := make([]string, len(indexed))
	for i, k := range indexed {
		if j := strings.LastIndexByte(k, '['); j > 0 && strings.HasSuffix(k, "]") {
			k = k[:j]
		}
		plain[i] = strings.ToLower(k)
	}
	sc.out.keys = append(sc.out.keys, scannedKey{path: plain, index: idx, line: line})
}

// key reads a dotted key up to '=', ']' or "]]".
func (sc *scanner) key() []string {
	var keys []string
	for sc.more() {
		sc.space(false)
		if !sc.more() {
			break
		}
		var k string
		switch sc.s[sc.i] {
		case '"':
			k = sc.quoted('"')
		case '\'':
			k = sc.quoted('\'')
		default:
			start := sc.i
			for sc.more() && isBare(sc.s[sc.i]) {
				sc.i++
			}
			k = sc.s[start:sc.i]
		}
		keys = append(keys, k)
		sc.space(false)
		if sc.more() && sc.s[sc.i] == '.' {
			sc.i++
			continue
		}
		break
	}
	return keys
}

func isBare(c byte) bool {
	return c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// quoted reads a one-line string and returns its contents (escapes are left
// as written: keys with escapes are rare and only used for lookups).
func (sc *scanner) quoted(q byte) string {
	sc.i++
	start := sc.i
	for sc.more() && sc.s[sc.i] != q && sc.s[sc.i] != '\n' {
		if q == '"' && sc.s[sc.i] == '\\' {
			sc.i++
		}
		sc.i++
	}
	k := sc.s[start:min(sc.i, len(sc.s))]
	sc.i++
	return k
}

// value skips one value; keys of inline tables are recorded under path when
// record is set (not inside arrays, whose elements have no key of their own).
func (sc *scanner) value(path []string, record bool) {
	sc.space(false)
	if !sc.more() {
		return
	}
	switch {
	case sc.peek(`"""`), sc.peek(`'''`):
		q := sc.s[sc.i : sc.i+3]
		sc.i += 3
		for sc.more() && !sc.peek(q) {
			if q == `"""` && sc.s[sc.i] == '\\' {
				sc.i++
				if sc.more() && sc.s[sc.i] == '\n' {
					sc.line++
				}
			} else if sc.s[sc.i] == '\n' {
				sc.line++
			}
			sc.i++
		}
		sc.i += 3
		// A closing delimiter may be preceded by up to two quotes that
		// belong to the string: """a""""" ends after five.
		for n := 0; n < 2 && sc.more() && sc.s[sc.i] == q[0]; n++ {
			sc.i++
		}
	case sc.s[sc.i] == '"' || sc.s[sc.i] == '\'':
		sc.quoted(sc.s[sc.i])
	case sc.s[sc.i] == '[':
		sc.i++
		for {
			sc.space(true)
			if !sc.more() || sc.s[sc.i] == ']' {
				sc.i++
				return
			}
			sc.value(nil, false)
			sc.space(true)
			if sc.more() && sc.s[sc.i] == ',' {
				sc.i++
			}
		}
	case sc.s[sc.i] == '{':
		sc.i++
		for {
			sc.space(true)
			if !sc.more() || sc.s[sc.i] == '}' {
				sc.i++
				return
			}
			line := sc.line
			keys := sc.key()
			sc.i++ // =
			sub := append(append([]string(nil), path...), keys...)
			if record {
				sc.record(sub, line)
			}
			sc.value(sub, record)
			sc.space(true)
			if sc.more() && sc.s[sc.i] == ',' {
				sc.i++
			}
		}
	default:
		for sc.more() && !strings.ContainsRune(" \t\r\n,]}#", rune(sc.s[sc.i])) {
			sc.i++
		}
	}
}
