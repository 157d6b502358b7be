package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const (
	sidecarName = "tokengate"
	nonRootUID  = 65532
	// kitAnnotation on a Deployment, with the value "development", marks a
	// kit that may keep revocations on an emptyDir (they die with the pod).
	kitAnnotation = "tokengate.example.com/kit"
)

// fileSource is what backs a path inside a container.
type fileSource struct {
	kind     string // ConfigMap, Secret, emptyDir, persistentVolumeClaim
	name     string // object name (ConfigMap, Secret)
	key      string // data key (ConfigMap, Secret)
	readOnly bool
}

// resolveFile finds the volume, and for ConfigMaps and Secrets the key,
// that provides path in container c.
func resolveFile(pod corev1.PodSpec, c corev1.Container, p string) (fileSource, error) {
	var mount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if (p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")) &&
			(mount == nil || len(m.MountPath) > len(mount.MountPath)) {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil {
		return fileSource{}, fmt.Errorf("%s: no volume mounted there in container %s", p, c.Name)
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p, mount.MountPath), "/")
	if mount.SubPath != "" {
		rel = path.Join(mount.SubPath, rel)
	}
	var vol *corev1.Volume
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == mount.Name {
			vol = &pod.Volumes[i]
		}
	}
	if vol == nil {
		return fileSource{}, fmt.Errorf("%s: volume %q is not defined", p, mount.Name)
	}
	find := func(kind, name string, items []corev1.KeyToPath) (fileSource, bool) {
		if len(items) == 0 {
			return fileSource{kind: kind, name: name, key: rel, readOnly: true}, !strings.Contains(rel, "/")
		}
		for _, it := range items {
			if it.Path == rel {
				return fileSource{kind: kind, name: name, key: it.Key, readOnly: true}, true
			}
		}
		return fileSource{}, false
	}
	switch {
	case vol.ConfigMap != nil:
		if fs, ok := find("ConfigMap", vol.ConfigMap.Name, vol.ConfigMap.Items); ok {
			return fs, nil
		}
	case vol.Secret != nil:
		if fs, ok := find("Secret", vol.Secret.SecretName, vol.Secret.Items); ok {
			return fs, nil
		}
	case vol.Projected != nil:
		for _, s := range vol.Projected.Sources {
			if s.ConfigMap != nil {
				if fs, ok := find("ConfigMap", s.ConfigMap.Name, s.ConfigMap.Items); ok {
					return fs, nil
				}
			}
			if s.Secret != nil {
				if fs, ok := find("Secret", s.Secret.Name, s.Secret.Items); ok {
					return fs, nil
				}
			}
		}
	case vol.EmptyDir != nil:
		return fileSource{kind: "emptyDir", readOnly: mount.ReadOnly}, nil
	case vol.PersistentVolumeClaim != nil:
		return fileSource{kind: "persistentVolumeClaim", name: vol.PersistentVolumeClaim.ClaimName,
			readOnly: mount.ReadOnly || vol.PersistentVolumeClaim.ReadOnly}, nil
	}
	return fileSource{}, fmt.Errorf("%s: volume %q does not provide %q", p, vol.Name, rel)
}

// containerPort resolves a named or numbered port of c; 0 when c has none.
func containerPort(c corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if p.Type == intstr.String && cp.Name == p.StrVal || p.Type == intstr.Int && cp.ContainerPort == p.IntVal {
			return cp.ContainerPort
		}
	}
	return 0
}

func portOf(hostport string) (int32, error) {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(p, 10, 32)
	return int32(n), err
}

// envValue is the literal value of env var name in c ("" if unset or from a ref).
func envValue(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func checkSecurityContext(where string, sc *corev1.SecurityContext) []error {
	if sc == nil {
		return []error{fmt.Errorf("%s: no securityContext", where)}
	}
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(where+": "+f, a...)) }
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		bad("runAsNonRoot must be true")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != nonRootUID {
		bad("runAsUser must be %d", nonRootUID)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		bad("readOnlyRootFilesystem must be true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		bad("allowPrivilegeEscalation must be false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		bad("privileged must not be set")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		bad("capabilities must drop ALL and add none")
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("seccompProfile must be RuntimeDefault")
	}
	return errs
}

// Resource policy for tokengate: see deploy/README.md, "Resources".
var (
	// fullCacheRSS is tokengate's resident memory with both caches full at
	// the kit's sizes (TestMeasureFullCacheRSS: about 66 MiB), rounded up.
	fullCacheRSS = resource.MustParse("96Mi")
	// minSidecarCPULimit: a CPU limit on tokengate, if any, must be at
	// least this, or bcrypt logins throttle the proxy.
	minSidecarCPULimit = resource.MustParse("2")
)

func checkResources(where string, r corev1.ResourceRequirements, sidecar bool) []error {
	var errs []error
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := r.Requests[name]
		lim, okLim := r.Limits[name]
		cpuLimitOptional := sidecar && name == corev1.ResourceCPU
		switch {
		case !okReq:
			errs = append(errs, fmt.Errorf("%s: %s request must be set", where, name))
		case !okLim && !cpuLimitOptional:
			errs = append(errs, fmt.Errorf("%s: %s request and limit must both be set", where, name))
		case req.Cmp(resource.Quantity{}) <= 0 || okLim && req.Cmp(lim) > 0:
			errs = append(errs, fmt.Errorf("%s: %s request %s must be > 0 and <= limit %s", where, name, req.String(), lim.String()))
		}
	}
	if !sidecar {
		return errs
	}
	if req := r.Requests[corev1.ResourceMemory]; req.Cmp(fullCacheRSS) < 0 {
		errs = append(errs, fmt.Errorf("%s: memory request %s is below what full caches take (%s)", where, req.String(), fullCacheRSS.String()))
	}
	if lim, ok := r.Limits[corev1.ResourceCPU]; ok && lim.Cmp(minSidecarCPULimit) < 0 {
		errs = append(errs, fmt.Errorf("%s: CPU limit %s lets bcrypt logins throttle the proxy: set none, or at least %s", where, lim.String(), minSidecarCPULimit.String()))
	}
	return errs
}

// checkMemLimit: GOMEMLIMIT follows the container's memory limit.
func checkMemLimit(where string, c corev1.Container) []error {
	e, ok := envValue(c, "GOMEMLIMIT")
	if !ok || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil ||
		e.ValueFrom.ResourceFieldRef.Resource != "limits.memory" ||
		(e.ValueFrom.ResourceFieldRef.ContainerName != "" && e.ValueFrom.ResourceFieldRef.ContainerName != c.Name) ||
		(!e.ValueFrom.ResourceFieldRef.Divisor.IsZero() && e.ValueFrom.ResourceFieldRef.Divisor.Cmp(resource.MustParse("1")) != 0) {
		return []error{fmt.Errorf("%s: GOMEMLIMIT must come from its own limits.memory through resourceFieldRef (divisor 1: bytes)", where)}
	}
	return nil
}

// sidecarProblems checks what makes the sidecar pattern safe: the app is
// reachable only through tokengate, the admin port stays out of the public
// Service, probes hit the admin port, every container is locked down, the
// files the config names exist in the pod, and replicas share revocations.
func sidecarProblems(b bundle) []error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if len(b.deployments) == 0 {
		bad("no Deployment")
	}
	for _, d := range b.deployments {
		errs = append(errs, deploymentProblems(b, d)...)
	}
	return errs
}

func deploymentProblems(b bundle, d *appsv1.Deployment) []error {
	var errs []error
	bad := func(f string, a ...any) {
		errs = append(errs, fmt.Errorf("Deployment %s: "+f, append([]any{d.Name}, a...)...))
	}
	pod := d.Spec.Template.Spec
	podLabels := labels.Set(d.Spec.Template.Labels)

	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
		psc.RunAsUser == nil || *psc.RunAsUser != nonRootUID ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("pod securityContext must set runAsNonRoot, runAsUser %d and seccompProfile RuntimeDefault", nonRootUID)
	}
	var tg *corev1.Container
	var apps []corev1.Container
	for i, c := range pod.Containers {
		where := "Deployment " + d.Name + " container " + c.Name
		errs = append(errs, checkSecurityContext(where, c.SecurityContext)...)
		errs = append(errs, checkResources(where, c.Resources, c.Name == sidecarName)...)
		if c.Name == sidecarName {
			errs = append(errs, checkMemLimit(where, c)...)
			tg = &pod.Containers[i]
		} else {
			apps = append(apps, c)
		}
	}
	if tg == nil {
		bad("no %q container", sidecarName)
		return errs
	}

	// The config, as the sidecar sees it.
	cfgPath := ""
	for i, a := range tg.Args {
		if a == "--config" && i+1 < len(tg.Args) {
			cfgPath = tg.Args[i+1]
		}
	}
	if cfgPath == "" {
		bad("tokengate args %v have no --config FILE", tg.Args)
		return errs
	}
	src, err := resolveFile(pod, *tg, cfgPath)
	if err != nil || src.kind != "ConfigMap" || b.configMaps[src.name] == nil {
		bad("--config %s must come from a ConfigMap in the build (got %+v, %v)", cfgPath, src, err)
		return errs
	}
	data, ok := b.configMaps[src.name].Data[src.key]
	if !ok {
		bad("ConfigMap %s has no key %s", src.name, src.key)
		return errs
	}
	cfg, err := parseSidecarConfig(data)
	if err != nil {
		bad("%v", err)
		return errs
	}
	for name, field := range map[string]*string{
		"TOKENGATE_REVOCATION_BACKEND":             &cfg.Revocation.Backend,
		"TOKENGATE_REVOCATION_REDIS_URL":           &cfg.Revocation.RedisURL,
		"TOKENGATE_REVOCATION_REDIS_PASSWORD_FILE": &cfg.Revocation.RedisPasswordFile,
		"TOKENGATE_ADMIN_TOKEN_FILE":               &cfg.AdminTokenFile,
	} {
		if e, ok := envValue(*tg, name); ok && e.ValueFrom == nil {
			*field = e.Value
		}
	}

	listenPort, err1 := portOf(cfg.Listen)
	adminPort, err2 := portOf(cfg.AdminListen)
	up, err3 := url.Parse(cfg.Upstream)
	if err1 != nil || err2 != nil || err3 != nil {
		bad("listen %q, admin_listen %q, upstream %q must be host:port, host:port, URL", cfg.Listen, cfg.AdminListen, cfg.Upstream)
		return errs
	}
	// upstream "" is auth-server mode (forward auth): no app in the pod,
	// the ingress asks verify; otherwise the app is reachable on loopback only.
	forwardAuth := cfg.Upstream == ""
	if forwardAuth && len(apps) > 0 {
		bad("upstream is empty (forward auth) but the pod has app containers %v that nothing reaches", apps[0].Name)
	}
	if !forwardAuth && up.Hostname() != "127.0.0.1" {
		bad("upstream %s must be on 127.0.0.1: the app must not listen on the pod IP", cfg.Upstream)
	}
	if containerPort(*tg, intstr.FromInt32(listenPort)) == 0 || containerPort(*tg, intstr.FromInt32(adminPort)) == 0 {
		bad("tokengate must declare containerPorts %d (listen) and %d (admin_listen)", listenPort, adminPort)
	}

	// The app: loopback only, no ports, nothing Kubernetes can route to.
	for _, a := range apps {
		if len(a.Ports) > 0 {
			bad("app container %s declares containerPorts; it must listen on 127.0.0.1 only", a.Name)
		}
		settings := slices.Clone(a.Args)
		settings = append(settings, a.Command...)
		for _, e := range a.Env {
			settings = append(settings, e.Value)
		}
		joined := strings.Join(settings, " ")
		if !strings.Contains(joined, up.Host) {
			bad("app container %s must be told to listen on %s (args/env), got %q", a.Name, up.Host, joined)
		}
		for _, wild := range []string{"0.0.0.0", "[::]", "=:" + up.Port(), " :" + up.Port()} {
			if strings.Contains(" "+joined, wild) {
				bad("app container %s listens on a wildcard address (%q in %q)", a.Name, wild, joined)
			}
		}
		if a.ReadinessProbe != nil || a.LivenessProbe != nil || a.StartupProbe != nil {
			bad("app container %s has probes: kubelet probes the pod IP, which the app must not listen on", a.Name)
		}
	}

	// Probes on the admin port.
	for _, p := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"readinessProbe", "/readyz", tg.ReadinessProbe}, {"livenessProbe", "/healthz", tg.LivenessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path ||
			containerPort(*tg, p.probe.HTTPGet.Port) != adminPort {
			bad("tokengate %s must be httpGet %s on the admin port %d", p.name, p.path, adminPort)
		}
	}

	// Shutdown: the kubelet signals every container at once. The app must
	// keep serving while tokengate waits shutdown_delay and drains for up to
	// shutdown_grace (a preStop sleep, the action that needs no shell), and
	// SIGKILL comes only after both.
	delay, _ := time.ParseDuration(cfg.Server.ShutdownDelay)
	grace, _ := time.ParseDuration(cfg.Server.ShutdownGrace)
	tgps := time.Duration(0)
	if pod.TerminationGracePeriodSeconds != nil {
		tgps = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	if tgps <= delay+grace {
		bad("terminationGracePeriodSeconds must exceed server.shutdown_delay + server.shutdown_grace (%s)", delay+grace)
	}
	for _, a := range apps {
		var sleep *corev1.SleepAction
		if a.Lifecycle != nil && a.Lifecycle.PreStop != nil {
			sleep = a.Lifecycle.PreStop.Sleep
		}
		if sleep == nil {
			bad("app container %s needs a preStop sleep action of at least server.shutdown_delay + server.shutdown_grace (%s): without it the app stops with tokengate and requests during the shutdown get 502", a.Name, delay+grace)
			continue
		}
		s := time.Duration(sleep.Seconds) * time.Second
		if s < delay+grace {
			bad("app container %s preStop sleep %s is shorter than server.shutdown_delay + server.shutdown_grace (%s)", a.Name, s, delay+grace)
		}
		if tgps <= s {
			bad("terminationGracePeriodSeconds (%s) must exceed app container %s's preStop sleep (%s)", tgps, a.Name, s)
		}
	}

	// Files the config names exist in the pod, from Secret keys that exist
	// (an optional item whose key is missing is no file: startup fails).
	files := []struct{ key, path, kind string }{
		{"tokens.signing_key_file", cfg.Tokens.SigningKeyFile, "Secret"},
		{"users.file", cfg.Users.File, "Secret"},
		{"admin_token_file", cfg.AdminTokenFile, "Secret"},
	}
	for i, f := range cfg.Tokens.VerificationKeyFiles {
		files = append(files, struct{ key, path, kind string }{fmt.Sprintf("tokens.verification_key_files[%d]", i), f, "Secret"})
	}
	if cfg.Revocation.Backend == "redis" {
		files = append(files, struct{ key, path, kind string }{"revocation.redis_password_file", cfg.Revocation.RedisPasswordFile, "Secret"})
	}
	if cfg.Users.Backend == "ldap" {
		l := cfg.Users.LDAP
		files = append(files,
			struct{ key, path, kind string }{"users.ldap.bind_password_file", l.BindPasswordFile, "Secret"},
			struct{ key, path, kind string }{"users.ldap.ca_file", l.CAFile, "Secret"},
			struct{ key, path, kind string }{"users.ldap.client_cert_file", l.ClientCertFile, "Secret"},
			struct{ key, path, kind string }{"users.ldap.client_key_file", l.ClientKeyFile, "Secret"})
		// The directory's service password: a Secret file, or the
		// variable from a secretKeyRef; never a literal in the manifest.
		e, fromEnv := envValue(*tg, "TOKENGATE_USERS_LDAP_BIND_PASSWORD")
		switch {
		case fromEnv && e.ValueFrom == nil:
			bad("TOKENGATE_USERS_LDAP_BIND_PASSWORD is a literal in the manifest: take it from a Secret (valueFrom.secretKeyRef) or use users.ldap.bind_password_file")
		case !fromEnv && l.BindPasswordFile == "":
			bad("users.backend ldap needs users.ldap.bind_password_file (a Secret file) or TOKENGATE_USERS_LDAP_BIND_PASSWORD from a secretKeyRef")
		}
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		src, err := resolveFile(pod, *tg, f.path)
		if err != nil {
			bad("%s: %v", f.key, err)
			continue
		}
		if src.kind != f.kind {
			bad("%s %s must come from a %s, not a %s", f.key, f.path, f.kind, src.kind)
			continue
		}
		s := b.secrets[src.name]
		if s == nil {
			bad("%s: Secret %s is not in the build", f.key, src.name)
			continue
		}
		if !secretHas(s, src.key) {
			bad("%s: Secret %s has no key %s", f.key, src.name, src.key)
		}
	}
	if cfg.Revocation.Backend == "bolt" {
		src, err := resolveFile(pod, *tg, cfg.Revocation.Path)
		switch {
		case err != nil || src.readOnly || (src.kind != "emptyDir" && src.kind != "persistentVolumeClaim"):
			bad("revocation.path %s must be on a writable PersistentVolumeClaim (got %+v, %v)", cfg.Revocation.Path, src, err)
		case src.kind == "emptyDir" && d.Annotations[kitAnnotation] != "development":
			bad("revocation.path %s is on an emptyDir: every pod replacement (rollout, config change, node drain, eviction) loses every revocation and logged-out tokens work again; use a PersistentVolumeClaim (strategy Recreate) or Redis, or mark a development kit with the annotation %s: development",
				cfg.Revocation.Path, kitAnnotation)
		case src.kind == "persistentVolumeClaim" && d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType:
			bad("revocation.path %s is on a PersistentVolumeClaim: the strategy must be Recreate (one pod at a time holds the bolt file), got %q",
				cfg.Revocation.Path, d.Spec.Strategy.Type)
		}
	}
	for _, v := range pod.Volumes {
		if v.PersistentVolumeClaim != nil && b.pvcs[v.PersistentVolumeClaim.ClaimName] == nil {
			bad("volume %s: PersistentVolumeClaim %s is not in the build", v.Name, v.PersistentVolumeClaim.ClaimName)
		}
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if replicas > 1 && cfg.Revocation.Backend != "redis" {
		bad("%d replicas with revocation backend %q: revocations would be per replica; use redis", replicas, cfg.Revocation.Backend)
	}
	if cfg.Revocation.Backend == "redis" {
		// The URL is either a Secret (it may hold the password) or a plain
		// value without a password (which then comes from
		// redis_password_file, a Secret file, checked above).
		e, ok := envValue(*tg, "TOKENGATE_REVOCATION_REDIS_URL")
		switch {
		case ok && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			if s := b.secrets[e.ValueFrom.SecretKeyRef.Name]; s == nil {
				bad("Secret %s for the Redis URL is not in the build", e.ValueFrom.SecretKeyRef.Name)
			} else if !secretHas(s, e.ValueFrom.SecretKeyRef.Key) {
				bad("Secret %s has no key %s", s.Name, e.ValueFrom.SecretKeyRef.Key)
			}
		case cfg.Revocation.RedisURL == "":
			bad("revocation backend redis needs a redis_url (TOKENGATE_REVOCATION_REDIS_URL)")
		default:
			u, err := url.Parse(cfg.Revocation.RedisURL)
			if err != nil {
				bad("revocation.redis_url: %v", err)
			} else if _, hasPassword := u.User.Password(); hasPassword {
				bad("revocation.redis_url %s holds a password in plain config: use redis_password_file (a Secret) or take the URL from a Secret", u.Redacted())
			}
			if cfg.Revocation.RedisPasswordFile == "" {
				bad("revocation.redis_url is plain config without a password: set redis_password_file (a Secret file)")
			}
		}
	}

	// Secrets and ConfigMaps the pod uses roll the pods when they change:
	// tokengate reloads the users file by itself but keys, tokens and the
	// config only on a restart. Either the name carries a content hash
	// (kustomize generators) or the pod template carries the content's
	// digest (the Helm chart's checksum/<kind>-<name> annotations).
	for _, ref := range podReferences(pod) {
		if generatedName.MatchString(ref.name) {
			continue
		}
		key := "checksum/" + strings.ToLower(ref.kind) + "-" + ref.name
		sum, annotated := d.Spec.Template.Annotations[key]
		if !annotated {
			bad("%s %s is not generated (no content hash in its name) and the pod template has no %s annotation: changing it would not roll the pods; use a secretGenerator/configMapGenerator", ref.kind, ref.name, key)
			continue
		}
		if want, ok := contentDigest(b, ref); !ok || sum != want {
			bad("pod template annotation %s = %q is not the digest of %s %s's content (%q): changing it would not roll the pods", key, sum, ref.kind, ref.name, want)
		}
	}

	// Services: tokengate's listen port is public; the admin port never
	// shares a Service with it; nothing routes to the app.
	public := 0
	for _, s := range b.services {
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			continue
		}
		targets := map[int32]bool{}
		for _, sp := range s.Spec.Ports {
			tp := sp.TargetPort
			if tp.Type == intstr.Int && tp.IntVal == 0 {
				tp = intstr.FromInt32(sp.Port)
			}
			n := containerPort(*tg, tp)
			if n == 0 {
				bad("Service %s port %s targets %s, which is not a tokengate port", s.Name, sp.Name, tp.String())
			}
			targets[n] = true
		}
		if targets[listenPort] {
			public++
			if targets[adminPort] {
				bad("Service %s exposes the admin port %d beside the public one", s.Name, adminPort)
			}
			if s.Spec.Ports[0].Name != "http" {
				bad("Service %s: the public port must be named http", s.Name)
			}
		}
	}
	if public == 0 {
		bad("no Service targets tokengate's listen port %d", listenPort)
	}

	// A PDB covers the pods.
	pdbs := 0
	for _, p := range b.pdbs {
		if sel := p.Spec.Selector; sel != nil && labels.SelectorFromSet(sel.MatchLabels).Matches(podLabels) {
			pdbs++
			if replicas > 1 && (p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() < 2) {
				bad("PodDisruptionBudget %s: with %d replicas keep minAvailable >= 2", p.Name, replicas)
			}
		}
	}
	if pdbs != 1 {
		bad("%d PodDisruptionBudgets select the pods, want 1", pdbs)
	}

	// The ServiceMonitor scrapes the admin port through a Service port.
	scraped := false
	for _, sm := range b.serviceMonitors {
		for _, s := range b.services {
			if !labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(s.Labels)) {
				continue
			}
			for _, ep := range sm.Spec.Endpoints {
				for _, sp := range s.Spec.Ports {
					if ep.Port == sp.Name && containerPort(*tg, sp.TargetPort) == adminPort {
						scraped = true
					}
				}
			}
		}
	}
	if len(b.serviceMonitors) > 0 && !scraped {
		bad("no ServiceMonitor endpoint scrapes the admin port %d", adminPort)
	}
	return errs
}

func secretHas(s *corev1.Secret, key string) bool {
	_, inString := s.StringData[key]
	_, inData := s.Data[key]
	return inString || inData
}

// contentDigest is the hex SHA-256 of the JSON of a Secret's or
// ConfigMap's data (keys sorted, as Helm's toJson writes them), the value
// the chart's checksum annotations carry.
func contentDigest(b bundle, ref objectRef) (string, bool) {
	var data any
	switch ref.kind {
	case "Secret":
		s := b.secrets[ref.name]
		if s == nil {
			return "", false
		}
		m := map[string]string{}
		for k, v := range s.Data {
			m[k] = string(v)
		}
		for k, v := range s.StringData {
			m[k] = v
		}
		data = m
	case "ConfigMap":
		c := b.configMaps[ref.name]
		if c == nil {
			return "", false
		}
		data = c.Data
	default:
		return "", false
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return "", false
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), true
}

// generatedName is a kustomize generated name: base name, "-", 10-character hash.
var generatedName = regexp.MustCompile(`-[a-z0-9]{10}$`)

type objectRef struct{ kind, name string }

// podReferences lists the Secrets and ConfigMaps a pod spec mounts or
// reads env from.
func podReferences(pod corev1.PodSpec) []objectRef {
	var refs []objectRef
	for _, v := range pod.Volumes {
		switch {
		case v.Secret != nil:
			refs = append(refs, objectRef{"Secret", v.Secret.SecretName})
		case v.ConfigMap != nil:
			refs = append(refs, objectRef{"ConfigMap", v.ConfigMap.Name})
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					refs = append(refs, objectRef{"Secret", src.Secret.Name})
				}
				if src.ConfigMap != nil {
					refs = append(refs, objectRef{"ConfigMap", src.ConfigMap.Name})
				}
			}
		}
	}
	for _, c := range pod.Containers {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				refs = append(refs, objectRef{"Secret", e.ValueFrom.SecretKeyRef.Name})
			}
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				refs = append(refs, objectRef{"ConfigMap", e.ValueFrom.ConfigMapKeyRef.Name})
			}
		}
	}
	return refs
}
