package main

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDashboardServed: statebusd serves the dashboard on the monitoring
// endpoint, lists it on the index, asks for the token from its
// environment, and stops cleanly with a page's stream open.
func TestDashboardServed(t *testing.T) {
	path := busPath(t)
	d := startDaemon(t, []string{"--pipe-name", path, "--http", "127.0.0.1:0", "--http-machines", "true", "--log-format", "json"},
		[]string{"STATEBUS_DASHBOARD_TOKEN=tok-123"})
	rec := d.waitLog(t, "monitoring endpoint listening")
	base := "http://" + rec["addr"].(string)

	if code, _ := httpGet(t, base+"/dashboard/"); code != http.StatusUnauthorized {
		t.Errorf("GET /dashboard/ without the token: %d, want 401", code)
	}
	code, body := httpGet(t, base+"/dashboard/?token=tok-123")
	if code != 200 || !strings.Contains(string(body), `<script src="app.js"`) {
		t.Fatalf("GET /dashboard/?token: %d %s", code, body)
	}
	if _, index := httpGet(t, base+"/"); !strings.Contains(string(index), "/dashboard/") {
		t.Errorf("the index does not list the dashboard:\n%s", index)
	}

	req, _ := http.NewRequest("GET", base+"/dashboard/events", nil)
	req.Header.Set("Authorization", "Bearer tok-123")
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if resp.StatusCode != 200 || line != "event: hello\n" {
		t.Fatalf("stream: %d %q %v", resp.StatusCode, line, err)
	}
	d.stop(t)
}
