package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// PrometheusOptions configures RunPrometheus.
type PrometheusOptions struct {
	// Binary is the path of a prometheus binary (v3, with the OTLP
	// receiver).
	Binary string
	// Dir holds its data; it must be empty or missing.
	Dir string
}

// RunPrometheus measures the reference: the same requests, sent the same
// way by the same clients (over OTLP/HTTP, the only OTLP Prometheus
// takes), into a Prometheus server started for the run with its OTLP
// receiver on, then counted with a PromQL query. Prometheus answers a
// request once its samples are in the TSDB head and its write-ahead
// log, so acknowledged and queryable are the same moment there.
// opts.Store, QueueDir and Config are not used; CPU counts the clients'
// and the Prometheus process's.
func RunPrometheus(ctx context.Context, p PrometheusOptions, opts Options) (Result, error) {
	opts.Protocol = ProtocolHTTP
	if err := opts.defaults(false); err != nil {
		return Result{}, err
	}
	addr, err := freeLocalAddr()
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(p.Dir, 0o750); err != nil {
		return Result{}, err
	}
	cfgFile := filepath.Join(p.Dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte("global: {}\n"), 0o640); err != nil {
		return Result{}, err
	}
	cmd := exec.CommandContext(ctx, p.Binary,
		"--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(p.Dir, "data"),
		"--web.listen-address="+addr, "--web.enable-otlp-receiver", "--log.level=warn")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("bench: start prometheus: %w", err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	base := "http://" + addr
	if err := waitReady(ctx, base+"/-/ready", 60*time.Second); err != nil {
		return Result{}, fmt.Errorf("bench: prometheus not ready: %w; its log: %s", err, stderr.String())
	}

	requests, points, start := encodeRequests(opts)
	res := Result{Points: points}
	exp := newHTTPExporter(base + "/api/v1/otlp/v1/metrics")
	defer exp.close()

	cpuBefore, promBefore := processCPU(), childCPU(cmd.Process.Pid)
	began := time.Now()
	res.Refused, err = sendAll(ctx, exp, requests)
	res.SendElapsed = time.Since(began)
	if err != nil {
		return res, fmt.Errorf("bench: send to prometheus: %w", err)
	}
	res.Acked, res.Elapsed = res.SendElapsed, res.SendElapsed
	res.CPU = processCPU() - cpuBefore + childCPU(cmd.Process.Pid) - promBefore
	res.PointsPerSecond = float64(res.Points) / res.Elapsed.Seconds()
	if res.CPU > 0 {
		res.PointsPerCPUSecond = float64(res.Points) / res.CPU.Seconds()
	}
	window := time.Since(start) + time.Minute
	res.Stored, err = promCount(ctx, base, fmt.Sprintf("sum(count_over_time(%s[%ds]))", metricName, int(window.Seconds())))
	if err != nil {
		return res, err
	}
	res.Lost = res.Points - res.Stored
	return res, nil
}

func waitReady(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// promCount evaluates a PromQL expression with a single scalar-like
// result.
func promCount(ctx context.Context, base, expr string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: query prometheus: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("bench: query prometheus: %w", err)
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("bench: query prometheus: %s", body.Error)
	}
	if len(body.Data.Result) == 0 {
		return 0, nil
	}
	v, _ := body.Data.Result[0].Value[1].(string)
	f, err := strconv.ParseFloat(v, 64)
	return int64(f), err
}

// childCPU is the CPU time (user + system) process pid has used, from
// /proc (clock ticks of 1/100 s, as Linux reports them to user space).
func childCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces; fields count
	// from after it.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
