package scenarios

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// token is one word of a statement, with where it was written.
type token struct {
	text   string
	pos    Pos
	quoted bool // written in double quotes (text is without them)
}

// statement is one logical line: its words, continuation lines included.
type statement struct {
	toks []token
	// end is the position just past the last word (for "got end of line").
	end Pos
}

// lexer splits a file into statements and collects the header comment.
type lexer struct {
	file  string
	lines []string
	doc   []string
	errs  *errList
}

func newLexer(file string, src []byte, errs *errList) *lexer {
	text := strings.ReplaceAll(string(src), "\r\n", "\n")
	return &lexer{file: file, lines: strings.Split(text, "\n"), errs: errs}
}

// statements returns every statement of the file. A line whose last word
// (before any comment) is a lone backslash continues on the next line.
func (lx *lexer) statements() []statement {
	var out []statement
	var cur statement
	inDoc, continuing := true, false
	for i, line := range lx.lines {
		toks, end := lx.words(i+1, line)
		if inDoc && !continuing {
			if c, ok := strings.CutPrefix(strings.TrimSpace(line), "#"); ok {
				lx.doc = append(lx.doc, strings.TrimPrefix(c, " "))
				continue
			}
			// A blank line after the header comment ends it; one before
			// it does not.
			if len(toks) > 0 || len(lx.doc) > 0 {
				inDoc = false
			}
		}
		cont := len(toks) > 0 && toks[len(toks)-1].text == `\` && !toks[len(toks)-1].quoted
		if cont {
			toks = toks[:len(toks)-1]
		}
		cur.toks = append(cur.toks, toks...)
		if len(toks) > 0 || !continuing {
			cur.end = end
		}
		continuing = cont
		if continuing {
			continue
		}
		if len(cur.toks) > 0 {
			out = append(out, cur)
		}
		cur = statement{}
	}
	if len(cur.toks) > 0 {
		out = append(out, cur)
	}
	return out
}

// words splits one line into tokens, dropping a "#" comment. Double quotes
// group words (no escapes: nothing in the language needs a quote inside).
func (lx *lexer) words(line int, s string) ([]token, Pos) {
	var toks []token
	i := 0
	endCol := 1
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '#':
			return toks, Pos{lx.file, line, endCol}
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				// Take the rest of the line as the quoted word, so that
				// the statement still parses and only this is reported.
				lx.errs.add(Pos{lx.file, line, i + 1}, "expected a closing \" before the end of the line", "")
				toks = append(toks, token{text: s[i+1:], pos: Pos{lx.file, line, i + 1}, quoted: true})
				return toks, Pos{lx.file, line, len(s) + 1}
			}
			toks = append(toks, token{text: s[i+1 : i+1+j], pos: Pos{lx.file, line, i + 1}, quoted: true})
			i += j + 2
			endCol = i + 1
		default:
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '\t' && s[j] != '#' && s[j] != '"' {
				j++
			}
			toks = append(toks, token{text: s[i:j], pos: Pos{lx.file, line, i + 1}})
			i = j
			endCol = i + 1
		}
	}
	return toks, Pos{lx.file, line, endCol}
}

// maxDuration bounds every duration: a scenario spans minutes or hours, and
// the bound keeps sums of times far from overflowing.
const maxDuration = 1000 * time.Hour

var durationUnits = []struct {
	name string
	d    time.Duration
}{{"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}

// parseDuration reads <decimal><unit> with unit ms, s, m or h, e.g. "200ms",
// "4.1s", "1.5m"; signed if allowed. Exact to the nanosecond.
func parseDuration(w string, signed bool) (time.Duration, bool) {
	neg := false
	if signed && len(w) > 0 && (w[0] == '+' || w[0] == '-') {
		neg = w[0] == '-'
		w = w[1:]
	}
	num := strings.TrimRightFunc(w, func(r rune) bool { return r >= 'a' && r <= 'z' })
	unit := w[len(num):]
	var scale time.Duration
	for _, u := range durationUnits {
		if u.name == unit {
			scale = u.d
		}
	}
	if scale == 0 || num == "" {
		return 0, false
	}
	whole, frac, _ := strings.Cut(num, ".")
	if whole == "" || !allDigits(whole) || !allDigits(frac) || strings.Contains(w, ".") && frac == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(whole, 10, 64)
	if err != nil || n > uint64(maxDuration/scale) {
		return 0, false
	}
	d := time.Duration(n) * scale
	// Each fractional digit is worth a tenth of the one before; digits
	// below a nanosecond must be zero, so that parsing stays exact.
	place := scale
	for _, c := range frac {
		if place%10 != 0 {
			if c != '0' {
				return 0, false
			}
			continue
		}
		place /= 10
		d += time.Duration(c-'0') * place
	}
	if d > maxDuration {
		return 0, false
	}
	if neg {
		d = -d
	}
	return d, true
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// formatDuration prints d in the unit that keeps it short and easy to
// compare with its neighbours: whole hours from 2h, whole minutes from 2m,
// else seconds from 1s ("4.1s", "90s"), else milliseconds ("200ms",
// "0.5ms"). parseDuration reads it back exactly.
func formatDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0 && d >= 2*time.Hour:
		return fmt.Sprintf("%s%dh", sign, d/time.Hour)
	case d%time.Minute == 0 && d >= 2*time.Minute:
		return fmt.Sprintf("%s%dm", sign, d/time.Minute)
	case d >= time.Second:
		return sign + decimal(uint64(d), uint64(time.Second), 9) + "s"
	}
	return sign + decimal(uint64(d), uint64(time.Millisecond), 6) + "ms"
}

// decimal prints n/unit with only the decimals it needs (unit = 10^digits).
func decimal(n, unit uint64, digits int) string {
	whole, frac := n/unit, n%unit
	if frac == 0 {
		return strconv.FormatUint(whole, 10)
	}
	f := strings.TrimRight(fmt.Sprintf("%0*d", digits, frac), "0")
	return strconv.FormatUint(whole, 10) + "." + f
}

var sizeUnits = []struct {
	name  string
	bytes uint64
}{{"B", 1}, {"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}}

// maxBytes bounds sizes (far beyond any simulated disk, far from overflow).
const maxBytes = 1 << 50

// parseSize reads <integer><unit> with unit B, KiB, MiB, GiB or TiB.
func parseSize(w string) (uint64, bool) {
	num := strings.TrimRightFunc(w, func(r rune) bool { return r < '0' || r > '9' })
	unit := w[len(num):]
	if num == "" || !allDigits(num) {
		return 0, false
	}
	for _, u := range sizeUnits {
		if u.name == unit {
			n, err := strconv.ParseUint(num, 10, 64)
			if err != nil || n > maxBytes/u.bytes {
				return 0, false
			}
			return n * u.bytes, true
		}
	}
	return 0, false
}

// formatSize prints bytes in the largest binary unit that divides it.
func formatSize(b uint64) string {
	for i := len(sizeUnits) - 1; i > 0; i-- {
		if b != 0 && b%sizeUnits[i].bytes == 0 {
			return strconv.FormatUint(b/sizeUnits[i].bytes, 10) + sizeUnits[i].name
		}
	}
	return strconv.FormatUint(b, 10) + "B"
}

// fold normalises a word for comparing with a near miss: case, and "_"
// against "-", do not count.
func fold(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "-") }

// nearest returns the valid word nearest to w if it is near enough to be a
// plausible typo, else "". Case and "-"/"_" are ignored; a word that is one
// part of a hyphenated valid word finds it ("serial" finds "cut-serial").
func nearest(w string, valid []string) string {
	fw := fold(w)
	best, bestD := "", math.MaxInt
	for _, v := range valid {
		d := editDistance(strings.ReplaceAll(fw, "-", ""), strings.ReplaceAll(fold(v), "-", ""))
		if d < bestD {
			best, bestD = v, d
		}
	}
	// Near enough: a few edits, and fewer than the word has letters (else
	// "c" would suggest "a").
	if best != "" && bestD <= max(1, min(3, len(best)/3)) && bestD < min(len(fw), len(best)) {
		return best
	}
	for _, v := range valid {
		for _, part := range strings.Split(fold(v), "-") {
			if len(fw) >= 3 && part == fw {
				return v
			}
		}
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in bytes (the
// language is ASCII; other bytes just count as different).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt // no typo is that long; keeps fuzzed input cheap
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
