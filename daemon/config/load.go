package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"tandem/internal/node"
	"tandem/internal/proto"
	"tandem/internal/repl"
)

// Load reads, parses and validates the configuration file at path.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a configuration file's contents; name is used
// in error messages and to resolve a relative authkey_file.
func Parse(name string, data []byte) (*File, error) {
	var raw rawFile
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := pe.Message
			if pe.Usage != "" {
				msg += " (" + strings.Join(strings.Fields(pe.Usage), " ") + ")"
			}
			return nil, &Error{File: name, Line: pe.Position.Line, Key: pe.LastKey, Msg: "TOML syntax: " + msg}
		}
		return nil, decodeError(name, err)
	}
	c := &checker{file: name, pos: scanPositions(data), reported: map[string]bool{}}
	c.unknownKeys(md)
	b := &builder{c: c, file: name}
	f := b.build(&raw)
	if len(c.errs) > 0 {
		errs := c.sorted()
		list := make([]error, len(errs))
		for i, e := range errs {
			list[i] = e
		}
		return nil, errors.Join(list...)
	}
	return f, nil
}

// decodeMsgRE matches the decoder's own errors: a section of the wrong
// shape (cluster = "x", node = "a") stops toml.Decode before our checks.
var decodeMsgRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

func decodeError(name string, err error) *Error {
	m := decodeMsgRE.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{File: name, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	key, msg := m[2], m[3]
	_, shape := knownKeys(nil)
	if sh, ok := shape[key]; ok && sh != key {
		msg = fmt.Sprintf("%s is a section; write %s and its keys on the lines below it", key, sh)
	}
	return &Error{File: name, Line: line, Key: key, Msg: msg}
}

// builder turns a rawFile into a File, reporting through c.
type builder struct {
	c    *checker
	file string

	cluster string
	nodes   []pnode // in file order
	names   []string
	byName  map[string]*pnode
	core    node.Config // shared part of every node's core config
	key     []byte

	media []pmedium

	replOn        bool
	repl          repl.Config
	pullAhead     bool
	dataIntegrity string

	group  []node.Resource
	specs  []ResourceSpec
	fsLine string // path of the first fs resource, for errors about it
	fences []pfence
}

// pnode is one [[node]] as read.
type pnode struct {
	path                                                   string // "node[i]"
	idx                                                    int    // i
	name                                                   string
	id                                                     proto.NodeID
	witness                                                bool
	address                                                string // host:port, port defaulted
	disk, metaDisk, nbdSocket, nbdDevice, control, metrics string
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func (b *builder) build(raw *rawFile) *File {
	b.readNodes(raw.Nodes)
	b.readCluster(&raw.Cluster)
	b.readMedia(raw.Heartbeats)
	b.readReplication(raw)
	b.readResources(raw.Resources)
	b.readFences(raw.Fences)
	b.crossChecks()
	if len(b.c.errs) > 0 {
		return nil
	}
	f := &File{Path: b.file, Cluster: b.cluster}
	for id := range b.names {
		f.nodes = append(f.nodes, b.setup(proto.NodeID(id)))
	}
	if len(b.c.errs) > 0 {
		return nil
	}
	f.summary = b.summary()
	return f
}

// Node returns what the node called name needs. An empty name means this
// machine: its hostname, or the hostname's first label.
func (f *File) Node(name string) (*NodeSetup, error) {
	tried := []string{name}
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("no node name given and the hostname is unknown (%v); pass --node NAME", err)
		}
		tried = []string{h}
		if short, _, ok := strings.Cut(h, "."); ok {
			tried = append(tried, short)
		}
	}
	for _, t := range tried {
		for _, n := range f.nodes {
			if n.Name == t {
				c := *n
				c.UDP, c.Serial = withReplay(n)
				return &c, nil
			}
		}
	}
	return nil, fmt.Errorf("%s: node %q is not in this cluster (nodes: %s); pass --node NAME", f.Path, tried[0], strings.Join(f.NodeNames(), ", "))
}

// NodeNames lists the cluster's nodes by id: the two data nodes, then the
// witness if there is one.
func (f *File) NodeNames() []string {
	out := make([]string, len(f.nodes))
	for i, n := range f.nodes {
		out[i] = n.Name
	}
	return out
}

// Summary is a one-line description of the cluster, for `tandem check`.
func (f *File) Summary() string { return f.summary }
