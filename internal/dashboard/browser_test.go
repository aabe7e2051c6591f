package dashboard

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/statebus/statebus"
)

// chromium returns Debian's Chromium, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	// Not on Windows: under Wine, Z:\usr\bin\chromium is the Linux
	// binary, which a Windows program cannot run.
	if _, err := os.Stat("/usr/bin/chromium"); err == nil && runtime.GOOS != "windows" {
		return "/usr/bin/chromium"
	}
	t.Skip("no Chromium: the browser test needs Debian's chromium package (apt-get install chromium; .ci/run installs it)")
	return ""
}

// browser starts headless Chromium for the test, its tab's
// context bounded to two minutes.
func browser(t *testing.T, exe string) context.Context {
	t.Helper()
	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe), chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 1000))
	t.Cleanup(cancel)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	bctx, cancel = context.WithTimeout(bctx, 120*time.Second)
	t.Cleanup(cancel)
	return bctx
}

// TestBrowser loads the page in headless Chromium against a real service
// with traffic: the machines (one with a state, one whose id is HTML),
// their rates and a live event appear; a filter narrows the tail; pause
// stops it. The screenshot goes to $STATEBUS_ARTIFACTS/dashboard.png, and
// with STATEBUS_UPDATE_SCREENSHOT=1 to docs/img/dashboard.png.
func TestBrowser(t *testing.T) {
	exe := chromium(t)
	srv, _, base := start(t, Options{Machines: true, Interval: 500 * time.Millisecond})
	traffic(t, srv, "ping", "pong")
	traffic(t, srv, "sensor-7", "controller")
	ctx := context.Background()
	door, err := statebus.Dial(ctx, "door", statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer door.Close()
	if err := door.SetState(ctx, "#door.closed.locked"); err != nil {
		t.Fatal(err)
	}
	const hostile = `<img src=x onerror="document.title='owned'">`
	h, err := statebus.Dial(ctx, hostile, statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	bctx := browser(t, exe)

	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) bool {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	poll := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	run("load the page", chromedp.Navigate(base+"/dashboard/"))
	run("machines appear", chromedp.WaitVisible(chromedp.CSS(`#machines tr[data-id="ping"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#machines tr[data-id="door"]`)))
	poll("rates and traffic appear", `(() => {
		const r = document.querySelector('#machines tr[data-id="ping"]');
		return r !== null && parseFloat(r.cells[5].textContent) > 0 &&
			document.querySelectorAll('#traffic tbody tr').length >= 2;
	})()`)
	run("a live event appears", chromedp.WaitVisible(chromedp.CSS(`#tail tbody tr`)))
	if !eval(`document.querySelector('#machines tr[data-id="door"]').cells[1].textContent === "#door.closed.locked"`) {
		t.Error("door's state is not shown")
	}
	// The hostile id is text: no element was made from it.
	if !eval(`document.querySelectorAll('img').length === 0 && document.title === "statebus" &&
		[...document.querySelectorAll('#machines td')].some(td => td.textContent === ` + jsString(hostile) + `)`) {
		t.Error("the id made of HTML was not shown as text, or was interpreted")
	}

	run("apply a filter", chromedp.SetValue(chromedp.CSS(`input[name="name"]`), "PONG"),
		chromedp.SetValue(chromedp.CSS(`input[name="source"]`), "ping"),
		chromedp.Click(chromedp.CSS(`#apply`)))
	poll("only PONG from ping in the tail", `(() => {
		const rows = [...document.querySelectorAll('#tail tbody tr')];
		return rows.length >= 3 && rows.every(r => r.cells[1].textContent === "PONG" && r.cells[2].textContent === "ping");
	})()`)

	run("take the screenshot", chromedp.Click(chromedp.CSS(`#pause`)))
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	// Paused: two more snapshots arrive, the tail's newest row stays.
	first, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('#tail tbody tr').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`Number(document.body.dataset.snapshots)`))
	if err != nil {
		t.Fatal(err)
	}
	poll("snapshots go on while paused", `Number(document.body.dataset.snapshots) >= `+strconv.Itoa(n+2))
	if !eval(`document.querySelector('#tail tbody tr').textContent === ` + jsString(first)) {
		t.Error("the tail moved while paused")
	}

	for _, dir := range []string{os.Getenv("STATEBUS_ARTIFACTS")} {
		if dir == "" {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "dashboard.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", filepath.Join(dir, "dashboard.png"))
	}
	if os.Getenv("STATEBUS_UPDATE_SCREENSHOT") == "1" {
		if err := os.WriteFile("../../docs/img/dashboard.png", shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// jsString quotes s for a JavaScript expression.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
