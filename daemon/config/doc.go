// Package config reads Tandem's configuration file: one TOML file that
// describes the whole cluster (what drbd.conf, ha.cf, haresources and
// authkeys described together) and is identical on every node. A node
// finds its own part by name (--node, or the hostname).
//
// Load and Parse check everything they can without touching the machine
// (except reading authkey_file) and report every problem at once, each as
// FILE:LINE: key: what is wrong; what to write instead. File.Node then
// hands one node's daemon its ready-made configs: node.Config for the
// core, transport configs for the heartbeat media, the disk and link
// addresses, the resource and fencing specs.
//
// Import converts a classic Heartbeat + DRBD 8 setup into this format.
//
// config.md next to this file documents every key.
package config

// DefaultPath is where the daemon and `tandem check` look for the file.
const DefaultPath = "/etc/tandem/tandem.toml"
