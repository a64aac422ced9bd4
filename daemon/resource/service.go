package resource

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"

	"tandem/daemon/resource/proc"
)

// ServiceKind says how a service is controlled.
type ServiceKind string

const (
	// Systemd: a unit, through systemd's D-Bus API.
	Systemd ServiceKind = "systemd"
	// LSB: an init script, `SCRIPT [ARGS...] start|stop|status`.
	LSB ServiceKind = "lsb"
	// OCF: a resource agent, `$OCF_ROOT/resource.d/PROVIDER/TYPE
	// start|stop|monitor`, parameters in the environment.
	OCF ServiceKind = "ocf"
)

// ServiceSpec is a service of the group.
type ServiceSpec struct {
	// Kind is systemd, lsb or ocf.
	Kind ServiceKind
	// Name is the systemd unit ("nginx" means nginx.service), the init
	// script's name under Dir, or the OCF agent's type ("IPaddr2").
	Name string

	// Args (LSB only) go before the action, as Heartbeat passes
	// `sendmail::arg1::arg2` from haresources.
	Args []string
	// Dir (LSB only) holds the init scripts. Default /etc/init.d.
	Dir string

	// Provider (OCF only) is the agent's provider directory. Default
	// "heartbeat".
	Provider string
	// Instance (OCF only) is OCF_RESOURCE_INSTANCE. Default Name.
	Instance string
	// Params (OCF only) become OCF_RESKEY_<key>=<value>. Keys are letters,
	// digits and underscores.
	Params map[string]string
	// OCFRoot (OCF only) is OCF_ROOT. Default /usr/lib/ocf.
	OCFRoot string
}

// NewService checks spec and returns the agent for its kind.
func NewService(spec ServiceSpec) (Agent, error) {
	if spec.Name == "" {
		return nil, fmt.Errorf("%s service: Name is empty", spec.Kind)
	}
	if strings.ContainsRune(spec.Name, '/') {
		return nil, fmt.Errorf("%s service %q: Name must not contain '/'", spec.Kind, spec.Name)
	}
	switch spec.Kind {
	case Systemd:
		unit := spec.Name
		if !strings.Contains(unit, ".") {
			unit += ".service"
		}
		return &SystemdUnit{unit: unit}, nil
	case LSB:
		dir := spec.Dir
		if dir == "" {
			dir = "/etc/init.d"
		}
		return &LSBScript{path: filepath.Join(dir, spec.Name), args: spec.Args}, nil
	case OCF:
		return newOCFAgent(spec)
	}
	return nil, fmt.Errorf("service %q: Kind %q is not one of systemd, lsb, ocf", spec.Name, spec.Kind)
}

// ---- LSB ----

// LSBScript is a service run by an LSB init script.
//
// Exit codes: start and stop succeed with 0 (LSB requires 0 for starting a
// running service and for stopping a stopped one). A script that breaks
// that rule on stop is forgiven when `status` then says the service is not
// running (1, 2 or 3). status: 0 Running; 3 Stopped; 1 (dead, pid file
// left) and 2 (dead, lock file left) are Failed, since the service died
// rather than being stopped; 4 (unknown) and anything else are Failed.
type LSBScript struct {
	path string
	args []string
}

func (l *LSBScript) String() string { return "lsb " + l.path }

func (l *LSBScript) run(ctx context.Context, action string) (proc.Result, error) {
	res, err := proc.Run(ctx, proc.Command{Path: l.path, Args: append(slices.Clone(l.args), action)})
	if err != nil {
		return res, fmt.Errorf("%s: %w", action, err)
	}
	return res, nil
}

// Start runs `SCRIPT start`.
func (l *LSBScript) Start(ctx context.Context) error {
	res, err := l.run(ctx, "start")
	if err != nil {
		return err
	}
	if res.Code != 0 {
		return fmt.Errorf("start: %s", res.Describe(lsbMeaning(res.Code)))
	}
	return nil
}

// Stop runs `SCRIPT stop`.
func (l *LSBScript) Stop(ctx context.Context) error {
	res, err := l.run(ctx, "stop")
	if err != nil {
		return err
	}
	if res.Code == 0 {
		return nil
	}
	// Not LSB-compliant, but harmless if the service is down anyway.
	st, serr := l.run(ctx, "status")
	if serr == nil && st.Code >= 1 && st.Code <= 3 {
		return nil
	}
	if serr != nil {
		return fmt.Errorf("stop: %s; then %w", res.Describe(lsbMeaning(res.Code)), serr)
	}
	return fmt.Errorf("stop: %s, and then status: %s", res.Describe(lsbMeaning(res.Code)), st.Describe(lsbStatusMeaning(st.Code)))
}

// Monitor runs `SCRIPT status`.
func (l *LSBScript) Monitor(ctx context.Context) (Status, error) {
	res, err := l.run(ctx, "status")
	if err != nil {
		return Failed, err
	}
	switch res.Code {
	case 0:
		return Running, nil
	case 3:
		return Stopped, nil
	}
	return Failed, fmt.Errorf("status: %s", res.Describe(lsbStatusMeaning(res.Code)))
}

func lsbMeaning(code int) string {
	switch code {
	case 1:
		return "generic or unspecified error"
	case 2:
		return "invalid or excess arguments"
	case 3:
		return "unimplemented feature"
	case 4:
		return "user had insufficient privilege"
	case 5:
		return "program is not installed"
	case 6:
		return "program is not configured"
	case 7:
		return "program is not running"
	}
	return ""
}

func lsbStatusMeaning(code int) string {
	switch code {
	case 1:
		return "program is dead and /var/run pid file exists"
	case 2:
		return "program is dead and /var/lock lock file exists"
	case 3:
		return "program is not running"
	case 4:
		return "program or service status is unknown"
	}
	return ""
}

// ---- OCF ----

// OCF exit codes (Open Cluster Framework resource agent API).
const (
	ocfSuccess          = 0
	ocfErrGeneric       = 1
	ocfErrArgs          = 2
	ocfErrUnimplemented = 3
	ocfErrPerm          = 4
	ocfErrInstalled     = 5
	ocfErrConfigured    = 6
	ocfNotRunning       = 7
	ocfRunningMaster    = 8
	ocfFailedMaster     = 9
)

func ocfMeaning(code int) string {
	switch code {
	case ocfSuccess:
		return "success"
	case ocfErrGeneric:
		return "generic error"
	case ocfErrArgs:
		return "invalid arguments"
	case ocfErrUnimplemented:
		return "unimplemented action"
	case ocfErrPerm:
		return "insufficient permissions"
	case ocfErrInstalled:
		return "not installed: something the agent needs is missing on this node"
	case ocfErrConfigured:
		return "not configured: the parameters are wrong"
	case ocfNotRunning:
		return "not running"
	case ocfRunningMaster:
		return "running as master"
	case ocfFailedMaster:
		return "failed as master"
	}
	return ""
}

var ocfParamKey = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// OCFAgent is a service run by an OCF resource agent.
//
// Exit codes: start succeeds with 0 (OCF_SUCCESS) only. stop succeeds with 0,
// and with 7 (OCF_NOT_RUNNING), which some agents answer for a resource that
// was already stopped (Pacemaker accepts it too). monitor: 0 Running;
// 8 (OCF_RUNNING_MASTER) Running, since Tandem has no promoted role; 7
// Stopped; 1 generic, 2 args, 3 unimplemented, 4 permissions, 5 not
// installed, 6 not configured, 9 failed master and anything else are
// Failed, with the meaning in the error. Every error quotes the agent's
// output.
type OCFAgent struct {
	path string
	env  []string
	name string
}

func newOCFAgent(spec ServiceSpec) (*OCFAgent, error) {
	root := spec.OCFRoot
	if root == "" {
		root = "/usr/lib/ocf"
	}
	provider := spec.Provider
	if provider == "" {
		provider = "heartbeat"
	}
	if strings.ContainsRune(provider, '/') {
		return nil, fmt.Errorf("ocf service %s: Provider %q must not contain '/'", spec.Name, provider)
	}
	instance := spec.Instance
	if instance == "" {
		instance = spec.Name
	}
	env := []string{
		"OCF_ROOT=" + root,
		"OCF_RA_VERSION_MAJOR=1",
		"OCF_RA_VERSION_MINOR=0",
		"OCF_RESOURCE_INSTANCE=" + instance,
		"OCF_RESOURCE_TYPE=" + spec.Name,
		"OCF_RESOURCE_PROVIDER=" + provider,
	}
	keys := make([]string, 0, len(spec.Params))
	for k := range spec.Params {
		keys = append(keys, k)
	}
	slices.Sort(keys) // a stable environment, whatever the map's order
	for _, k := range keys {
		if !ocfParamKey.MatchString(k) {
			return nil, fmt.Errorf("ocf service %s: parameter name %q: only letters, digits and '_' are allowed", spec.Name, k)
		}
		env = append(env, "OCF_RESKEY_"+k+"="+spec.Params[k])
	}
	return &OCFAgent{
		path: filepath.Join(root, "resource.d", provider, spec.Name),
		env:  env,
		name: fmt.Sprintf("ocf:%s:%s (%s)", provider, spec.Name, instance),
	}, nil
}

func (o *OCFAgent) String() string { return o.name }

func (o *OCFAgent) run(ctx context.Context, action string) (proc.Result, error) {
	env := o.env
	if dl, ok := ctx.Deadline(); ok {
		// Agents size their own waits by the operation's timeout, in ms.
		ms := max(time.Until(dl).Milliseconds(), 0)
		env = append(slices.Clone(env), "OCF_RESKEY_CRM_meta_timeout="+strconv.FormatInt(ms, 10))
	}
	res, err := proc.Run(ctx, proc.Command{Path: o.path, Args: []string{action}, Env: env})
	if err != nil {
		return res, fmt.Errorf("%s: %w", action, err)
	}
	return res, nil
}

// Start runs the agent's start action.
func (o *OCFAgent) Start(ctx context.Context) error {
	res, err := o.run(ctx, "start")
	if err != nil {
		return err
	}
	if res.Code != ocfSuccess {
		return fmt.Errorf("start: %s", res.Describe(ocfMeaning(res.Code)))
	}
	return nil
}

// Stop runs the agent's stop action.
func (o *OCFAgent) Stop(ctx context.Context) error {
	res, err := o.run(ctx, "stop")
	if err != nil {
		return err
	}
	if res.Code != ocfSuccess && res.Code != ocfNotRunning {
		return fmt.Errorf("stop: %s", res.Describe(ocfMeaning(res.Code)))
	}
	return nil
}

// Monitor runs the agent's monitor action.
func (o *OCFAgent) Monitor(ctx context.Context) (Status, error) {
	res, err := o.run(ctx, "monitor")
	if err != nil {
		return Failed, err
	}
	return ocfMonitor(res)
}

// ---- systemd ----

// SystemdUnit is a service run by systemd. Start and Stop queue a job with
// mode "replace" and wait for its result: only "done" is a success (the
// others are canceled, timeout, failed, dependency, skipped). Monitor reads
// ActiveState: active and reloading are Running, inactive is Stopped, failed
// is Failed, and so are activating and deactivating (a unit in transition
// is not serving), as is a unit systemd cannot find.
type SystemdUnit struct{ unit string }

func (s *SystemdUnit) String() string { return "systemd " + s.unit }

// connect opens a connection to systemd for one action: a connection per
// action survives systemd's and D-Bus's restarts without reconnection
// logic, and actions are rare.
func (s *SystemdUnit) connect(ctx context.Context) (*dbus.Conn, error) {
	c, err := dbus.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to systemd (system bus or /run/systemd/private): %w", err)
	}
	return c, nil
}

// Start starts the unit and waits for the job.
func (s *SystemdUnit) Start(ctx context.Context) error {
	return s.job(ctx, "start", (*dbus.Conn).StartUnitContext)
}

// Stop stops the unit and waits for the job.
func (s *SystemdUnit) Stop(ctx context.Context) error {
	return s.job(ctx, "stop", (*dbus.Conn).StopUnitContext)
}

type jobFunc func(c *dbus.Conn, ctx context.Context, name, mode string, ch chan<- string) (int, error)

func (s *SystemdUnit) job(ctx context.Context, what string, f jobFunc) error {
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	ch := make(chan string, 1) // buffered: the library must never block on us
	if _, err := f(c, ctx, s.unit, "replace", ch); err != nil {
		return fmt.Errorf("%s job: %w", what, err)
	}
	select {
	case r := <-ch:
		if r != "done" {
			return fmt.Errorf("%s job ended %q (see journalctl -u %s)", what, r, s.unit)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s job: no result: %w", what, ctx.Err())
	}
}

// Monitor reads the unit's LoadState and ActiveState.
func (s *SystemdUnit) Monitor(ctx context.Context) (Status, error) {
	c, err := s.connect(ctx)
	if err != nil {
		return Failed, err
	}
	defer c.Close()
	load, err := s.property(ctx, c, "LoadState")
	if err != nil {
		return Failed, err
	}
	if load != "loaded" {
		return Failed, fmt.Errorf("unit LoadState is %q", load)
	}
	active, err := s.property(ctx, c, "ActiveState")
	if err != nil {
		return Failed, err
	}
	switch active {
	case "active", "reloading":
		return Running, nil
	case "inactive":
		return Stopped, nil
	}
	return Failed, fmt.Errorf("unit ActiveState is %q", active)
}

func (s *SystemdUnit) property(ctx context.Context, c *dbus.Conn, name string) (string, error) {
	p, err := c.GetUnitPropertyContext(ctx, s.unit, name)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	v, ok := p.Value.Value().(string)
	if !ok {
		return "", fmt.Errorf("reading %s: not a string: %v", name, p.Value)
	}
	return v, nil
}
