// loadgen: the closed-loop HTTP load client of bench/runtime.
//
// It keeps -c connections busy, each sending the same POST body back to back for -d, and prints
// one JSON object: requests, errors by kind, throughput, and latency percentiles computed from
// every single request (nanosecond timer, no histogram buckets). An answer other than 200 is
// counted as an error by status and the connection sends its next request at once (no back-off,
// whatever Retry-After says); latencies are those of the 200s. `first_ok_body` is the first 200
// answer, for the caller to check, `first_body` the first error's. Go keeps the client's own CPU
// cost small, which matters when client and server share two cores. Every server under test is
// driven by this same binary with the same flags.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

type result struct {
	Requests    int            `json:"requests"`
	OK          int            `json:"ok"`
	Errors      map[string]int `json:"errors"`
	Seconds     float64        `json:"seconds"`
	RPS         float64        `json:"rps"`
	P50Ms       float64        `json:"p50_ms"`
	P90Ms       float64        `json:"p90_ms"`
	P99Ms       float64        `json:"p99_ms"`
	MaxMs       float64        `json:"max_ms"`
	MeanMs      float64        `json:"mean_ms"`
	Concurrency int            `json:"concurrency"`
	FirstBody   string         `json:"first_body"`
	FirstOK     string         `json:"first_ok_body"`
}

func main() {
	url := flag.String("url", "", "POST target")
	bodyFile := flag.String("body", "", "file with the request body")
	conc := flag.Int("c", 8, "concurrent connections")
	dur := flag.Duration("d", 30*time.Second, "duration")
	maxReq := flag.Int("max", 5_000_000, "stop after this many requests per connection (a bound)")
	flag.Parse()
	if *url == "" || *bodyFile == "" || *conc < 1 || *dur <= 0 {
		fmt.Fprintln(os.Stderr, "usage: loadgen -url URL -body FILE [-c 8] [-d 30s]")
		os.Exit(2)
	}
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        *conc,
		MaxIdleConnsPerHost: *conc,
		MaxConnsPerHost:     *conc,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}

	var mu sync.Mutex
	errors := map[string]int{}
	var first, firstOK string
	lat := make([][]time.Duration, *conc)
	start := time.Now()
	deadline := start.Add(*dur)
	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			mine := make([]time.Duration, 0, 1<<16)
			for i := 0; i < *maxReq && time.Now().Before(deadline); i++ {
				req, _ := http.NewRequest(http.MethodPost, *url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					mu.Lock()
					errors["transport"]++
					mu.Unlock()
					continue
				}
				data, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				elapsed := time.Since(t0)
				if rerr != nil || resp.StatusCode != http.StatusOK {
					mu.Lock()
					errors[fmt.Sprintf("status %d", resp.StatusCode)]++
					if first == "" {
						first = string(data)
					}
					mu.Unlock()
					continue
				}
				if len(mine) == 0 {
					mu.Lock()
					if firstOK == "" {
						firstOK = string(data)
					}
					mu.Unlock()
				}
				mine = append(mine, elapsed)
			}
			lat[w] = mine
		}(w)
	}
	wg.Wait()
	seconds := time.Since(start).Seconds()

	all := make([]time.Duration, 0)
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	nerr := 0
	for _, n := range errors {
		nerr += n
	}
	r := result{
		Requests: len(all) + nerr, OK: len(all), Errors: errors, Seconds: seconds,
		RPS: float64(len(all)) / seconds, Concurrency: *conc, FirstBody: first, FirstOK: firstOK,
	}
	if len(all) > 0 {
		var sum time.Duration
		for _, d := range all {
			sum += d
		}
		r.P50Ms = ms(pct(all, 50))
		r.P90Ms = ms(pct(all, 90))
		r.P99Ms = ms(pct(all, 99))
		r.MaxMs = ms(all[len(all)-1])
		r.MeanMs = ms(sum / time.Duration(len(all)))
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}

// pct: linear interpolation between the closest ranks, as numpy's default.
func pct(sorted []time.Duration, p float64) time.Duration {
	k := float64(len(sorted)-1) * p / 100
	lo := int(k)
	hi := lo
	if hi+1 < len(sorted) {
		hi = lo + 1
	}
	frac := k - float64(lo)
	return sorted[lo] + time.Duration(frac*float64(sorted[hi]-sorted[lo]))
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
