package config

// The file as TOML gives it, before any checking. Every leaf is a value so
// that toml.Decode never stops at a wrongly typed value: the checks that
// follow report every bad value, with its line, instead of only the first.

// value is one leaf of the file as the TOML decoder produced it.
type value struct {
	v   any
	set bool
}

// UnmarshalTOML keeps the raw value for the checks.
func (f *value) UnmarshalTOML(v any) error {
	f.v, f.set = v, true
	return nil
}

type rawFile struct {
	Cluster     rawCluster      `toml:"cluster"`
	Nodes       []rawNode       `toml:"node"`
	Heartbeats  []rawHeartbeat  `toml:"heartbeat"`
	Replication *rawReplication `toml:"replication"`
	Resources   []rawResource   `toml:"resource"`
	Fences      []rawFence      `toml:"fence"`
}

type rawCluster struct {
	Name               value `toml:"name"`
	Keepalive          value `toml:"keepalive"`
	Warntime           value `toml:"warntime"`
	Deadtime           value `toml:"deadtime"`
	Initdead           value `toml:"initdead"`
	AutoFailback       value `toml:"auto_failback"`
	Preferred          value `toml:"preferred"`
	Fencing            value `toml:"fencing"`
	FenceDelay         value `toml:"fence_delay"`
	FenceTimeout       value `toml:"fence_timeout"`
	FenceRetry         value `toml:"fence_retry"`
	ClockDriftPPM      value `toml:"clock_drift_ppm"`
	MigrationThreshold value `toml:"migration_threshold"`
	Authkey            value `toml:"authkey"`
	AuthkeyFile        value `toml:"authkey_file"`
}

type rawNode struct {
	Name           value `toml:"name"`
	Witness        value `toml:"witness"`
	Address        value `toml:"address"`
	Disk           value `toml:"disk"`
	MetaDisk       value `toml:"meta_disk"`
	NBDSocket      value `toml:"nbd_socket"`
	NBDDevice      value `toml:"nbd_device"`
	ControlSocket  value `toml:"control_socket"`
	MetricsAddress value `toml:"metrics_address"`
}

type rawHeartbeat struct {
	Kind       value `toml:"kind"`
	Name       value `toml:"name"`
	Nodes      value `toml:"nodes"`
	Interface  value `toml:"interface"`
	Interfaces value `toml:"interfaces"`
	Port       value `toml:"port"`
	Addresses  value `toml:"addresses"`
	Group      value `toml:"group"`
	TTL        value `toml:"ttl"`
	Loop       value `toml:"loop"`
	Device     value `toml:"device"`
	Devices    value `toml:"devices"`
	Baud       value `toml:"baud"`
}

type rawReplication struct {
	Protocol      value `toml:"protocol"`
	Size          value `toml:"size"`
	Blocks        value `toml:"blocks"`
	ResyncRate    value `toml:"resync_rate"`
	AfterSB0Pri   value `toml:"after_sb_0pri"`
	AfterSB1Pri   value `toml:"after_sb_1pri"`
	AfterSB2Pri   value `toml:"after_sb_2pri"`
	Fencing       value `toml:"fencing"`
	OnIOError     value `toml:"on_io_error"`
	CsumResync    value `toml:"csum_resync"`
	ALExtents     value `toml:"al_extents"`
	PingInterval  value `toml:"ping_interval"`
	PingTimeout   value `toml:"ping_timeout"`
	OnCongestion  value `toml:"on_congestion"`
	DataIntegrity value `toml:"data_integrity"`
}

type rawResource struct {
	Kind            value `toml:"kind"`
	Name            value `toml:"name"`
	StartTimeout    value `toml:"start_timeout"`
	StopTimeout     value `toml:"stop_timeout"`
	MonitorTimeout  value `toml:"monitor_timeout"`
	MonitorInterval value `toml:"monitor_interval"`
	// ip
	Address   value `toml:"address"`
	Interface value `toml:"interface"`
	// fs
	Device       value `toml:"device"`
	Mountpoint   value `toml:"mountpoint"`
	FSType       value `toml:"fstype"`
	Options      value `toml:"options"`
	Fsck         value `toml:"fsck"`
	ForceUnmount value `toml:"force_unmount"`
	// service
	Systemd value `toml:"systemd"`
	LSB     value `toml:"lsb"`
	Args    value `toml:"args"`
	OCF     value `toml:"ocf"`
	Params  value `toml:"params"`
	// exec
	Start   value `toml:"start"`
	Stop    value `toml:"stop"`
	Monitor value `toml:"monitor"`
}

type rawFence struct {
	Kind       value `toml:"kind"`
	Name       value `toml:"name"`
	Targets    value `toml:"targets"`
	Command    value `toml:"command"`
	Agent      value `toml:"agent"`
	Options    value `toml:"options"`
	PeerOption value `toml:"peer_option"`
	QMP        value `toml:"qmp"`
	Action     value `toml:"action"`
}

// kindKeys says which keys each kind of a section accepts (beyond kind,
// name and, for resources, the timeouts); a key of another kind is refused
// rather than ignored.
var resourceKindKeys = map[string][]string{
	"disk":    {},
	"ip":      {"address", "interface"},
	"fs":      {"device", "mountpoint", "fstype", "options", "fsck", "force_unmount"},
	"service": {"systemd", "lsb", "args", "ocf", "params"},
	"exec":    {"start", "stop", "monitor"},
}

var heartbeatKindKeys = map[string][]string{
	"ucast":  {"nodes", "interface", "interfaces", "port", "addresses"},
	"bcast":  {"nodes", "interface", "interfaces", "port"},
	"mcast":  {"nodes", "interface", "interfaces", "port", "group", "ttl", "loop"},
	"serial": {"nodes", "device", "devices", "baud"},
}

var fenceKindKeys = map[string][]string{
	"exec":        {"targets", "command"},
	"fence_agent": {"targets", "agent", "options", "peer_option", "action"},
	"qemu":        {"targets", "qmp", "action"},
}
