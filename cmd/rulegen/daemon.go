package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rulegen/rulegen/pkg/sync"
)

// daemon runs the node agent until SIGTERM or SIGINT. Rules are left in
// place on exit, so that traffic flows while rulegen restarts; the next
// start replaces them in one transaction once the watches have synced.
func daemon(o options, s settings, stderr io.Writer) int {
	// Go's default GOGC (100), as kube-proxy: an earlier rulegen set 50 to
	// cut the peak RSS of a first sync, when it held the listed ruleset
	// and every API object beside its conversion. With neither, the scale
	// harness (docs/performance.md) gave at 20,000 services a cold start
	// of 2.33 s and 293 MiB at 100 against 3.32 s and 234 MiB at 50, and
	// at 5,000 0.60 s and 102 MiB against 0.88 s and 89 MiB (kube-proxy:
	// 175-179 MiB). GOGC in the environment sets it as for any Go program.
	sync.PreferLists() // before any API client: see its comment
	log, err := newLogger(stderr, o.verbosity, o.loggingFormat)
	if err != nil {
		fmt.Fprintf(stderr, "rulegen: %v\n", err)
		return exitUsage
	}
	client, check, server, err := newClient(o)
	if err != nil {
		log.Error("cannot create the API client", "error", err.Error())
		return exitUsage
	}
	kernel, err := sync.NewKernel(s.backend, s.iptMode)
	if err != nil {
		log.Error("kernel backend", "error", err.Error())
		return exitSkipped
	}
	kernel = withFaults(kernel)
	// As kube-proxy (platformSetup), before the proxier: it reads
	// nf_conntrack_tcp_be_liberal, which --conntrack-tcp-be-liberal sets.
	if err := sync.SetConntrackSysctls(sync.ProcSysctl{}, o.conntrack, sync.OnlineCPUs(), log); err != nil {
		log.Error("cannot set the conntrack sysctls (--conntrack-*: 0 leaves one as it is)", "error", err.Error())
		return exitSkipped
	}
	s.cfg.ConntrackTCPBeLiberal = sync.ConntrackTCPBeLiberal()
	metrics := sync.NewMetrics()
	health := sync.NewHealthChecks()
	defer health.Close()
	p := sync.NewProxier(sync.Options{
		Backend: s.backend, NodeName: s.cfg.Node.Name, NodeIPs: s.cfg.Node.IPs,
		ClusterCIDRs: s.cfg.ClusterCIDRs, NodePortAddresses: s.cfg.NodePortAddresses, NodePortPrimary: s.cfg.NodePortPrimary, DetectLocalNodeCIDR: s.cfg.DetectLocalNodeCIDR, PodInterface: s.cfg.PodInterface, MasqueradeAll: s.cfg.MasqueradeAll,
		MasqueradeBit: s.cfg.MasqueradeBit, ServiceCIDRs: s.cfg.ServiceCIDRs, LocalhostNodePorts: s.cfg.LocalhostNodePorts,
		ConntrackTCPBeLiberal: s.cfg.ConntrackTCPBeLiberal,
		Families:              s.families, SyncPeriod: o.syncPeriod, FullSyncPeriod: o.fullSyncPeriod, HealthTimeout: o.healthTimeout,
		KernelCheckPeriod: kernelCheckPeriod,
	}, kernel, sync.NetlinkConntrack{}, metrics, health, nil, log)
	p.SetVerbose(o.verbosity >= verbosityRuleset)
	runner := sync.NewRunner(p.Sync, o.minSyncPeriod, o.syncPeriod, time.Second, nil)
	p.SetRequest(runner.Run)
	// The UDP conntrack reconcile: every syncPeriod, after a full sync and
	// after a failed cleanup, retried with backoff while it fails.
	reconciler := sync.NewRunner(p.ReconcileConntrack, time.Second, o.syncPeriod, time.Second, nil)
	p.SetReconcileRequest(reconciler.Run)

	configz, err := configzBody(o)
	if err != nil {
		log.Error("effective configuration", "error", err.Error())
		return exitSkipped
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		if err := sync.Serve(ctx, o.healthzAddr, o.metricsAddr, o.profiling, p, metrics, sync.Route{Path: "/configz", Handler: configzHandler(configz)}); err != nil {
			log.Error("health and metrics server", "error", err.Error())
			os.Exit(exitSkipped)
		}
	}()
	log.Info("starting", "version", versionString(), "node", s.cfg.Node.Name, "backend", s.backend, "minSyncPeriod", o.minSyncPeriod, "syncPeriod", o.syncPeriod)
	log.Info("connecting to the API server", "server", server)
	err = waitForAPIServer(ctx, defaultFirstContact, server, func(ctx context.Context) error { return sync.CheckPermissions(ctx, check) }, log)
	if err != nil && ctx.Err() != nil {
		log.Info("stopped before the API server answered; rules stay in place")
		return exitOK
	}
	if err != nil {
		log.Error(describeStartError(err), "server", server, "error", err.Error())
		return exitSkipped
	}
	if err := sync.Watch(ctx, client, p); err != nil {
		log.Error("watching the API server", "error", err.Error())
		return exitSkipped
	}
	node := p.Node()
	log.Info("watches synced", "nodeIPs", fmt.Sprint(node.IPs), "zone", node.Zone)
	for _, w := range sync.NodeWarnings(s.backend, s.cfg, p.Families()) {
		log.Warn(w)
	}
	go reconciler.Loop(ctx.Done())
	go p.WatchKernel(ctx.Done())
	runner.Loop(ctx.Done())
	log.Info("stopping; rules stay in place")
	return exitOK
}

// kernelCheckPeriod is how often the daemon checks, between syncs, that
// its rules are still in the kernel, when that check costs the same at any
// number of services (0.15-0.6 ms: nftables, and iptables-nft read through
// netlink; BenchmarkApplyNFTables and BenchmarkApplyIPTables,
// intact-check). With iptables-legacy the check is made at each sync only,
// at least every --sync-period.
const kernelCheckPeriod = time.Second
