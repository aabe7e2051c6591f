package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/statebus/statebus/internal/remote"
)

func init() {
	commands["certs"] = command{"make a CA and certificates for statebusd's TLS listener and its clients", runCerts}
}

const certsAbout = `Makes the certificates of mutual TLS (docs/remote.md), as files in DIR:

  ca DIR                  a CA: DIR/ca.pem (give it to statebusd as TlsClientCa
                          and to clients as --tls-ca) and DIR/ca-key.pem (keep
                          it where only you can read it; it signs the others)
  server DIR HOST...      statebusd's certificate for the host names and IP
                          addresses clients use: DIR/server.pem, DIR/server-key.pem
                          (TlsCert, TlsKey)
  client DIR NAME         a client's certificate with common name NAME, which
                          access rules name "CN=NAME": DIR/NAME.pem,
                          DIR/NAME-key.pem (--tls-cert, --tls-key)

Keys are ECDSA P-256, written with mode 0600. An existing file is never
overwritten. Any other CA works too, if its certificates carry the
serverAuth and clientAuth extended key usages.`

// certName is what a client certificate's NAME may be: it names files.
var certName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func runCerts(_ context.Context, e *env, args []string) int {
	f := newFlags(e, "certs", "ca|server|client DIR [HOST...|NAME] [flags]", certsAbout,
		`statebus certs ca /etc/statebus/tls
statebus certs server /etc/statebus/tls bus.example.org 192.0.2.10
statebus certs client /etc/statebus/tls sensor-gateway --days 90`)
	days := f.Int("days", 0, "how long the certificate is valid, in days (default 3650 for a CA, 365 otherwise)")
	pos, code, ok := f.parse(args, 2, -1)
	if !ok {
		return code
	}
	kind, dir, rest := pos[0], pos[1], pos[2:]
	valid := time.Duration(*days) * 24 * time.Hour
	if *days < 0 {
		return f.fail("--days must be positive, not %d", *days)
	}
	var written []string
	var err error
	switch kind {
	case "ca":
		if len(rest) > 0 {
			return f.fail("unexpected argument %q: ca takes only DIR", rest[0])
		}
		if valid == 0 {
			valid = 3650 * 24 * time.Hour
		}
		written, err = makeCA(dir, valid)
	case "server":
		if len(rest) == 0 {
			return f.fail("server needs the host names or IP addresses clients connect to, e.g. statebus certs server %s bus.example.org", dir)
		}
		written, err = issue(dir, "server", remote.Request{CommonName: rest[0], Hosts: rest, Usage: x509.ExtKeyUsageServerAuth}, valid)
	case "client":
		if len(rest) != 1 {
			return f.fail("client takes one NAME, its certificate's common name")
		}
		if !certName.MatchString(rest[0]) || rest[0] == "ca" || rest[0] == "server" {
			return f.fail("client NAME %q: use letters, digits, '.', '_' and '-' (it names the files), and not ca or server", rest[0])
		}
		written, err = issue(dir, rest[0], remote.Request{CommonName: rest[0], Usage: x509.ExtKeyUsageClientAuth}, valid)
	default:
		return f.fail("unknown kind %q: want ca, server or client", kind)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "statebus certs: %v\n", err)
		return 1
	}
	if f.json {
		writeJSON(e.stdout, map[string][]string{"files": written})
		return 0
	}
	o := newOut(e.stdout, e.tty)
	for _, w := range written {
		o.check(true, "wrote %s", w)
	}
	return 0
}

// makeCA writes a new CA to dir.
func makeCA(dir string, valid time.Duration) ([]string, error) {
	cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if err := free(cert, key); err != nil {
		return nil, err
	}
	ca, err := remote.NewCA("statebus CA", valid)
	if err != nil {
		return nil, err
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	return writeFiles(dir, []fileData{{cert, ca.CertPEM(), 0o644}, {key, keyPEM, 0o600}})
}

// issue signs a certificate with dir's CA and writes it as dir/name.pem
// and dir/name-key.pem.
func issue(dir, name string, r remote.Request, valid time.Duration) ([]string, error) {
	cert, key := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := free(cert, key); err != nil {
		return nil, err
	}
	ca, err := remote.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		return nil, fmt.Errorf("%w (make one first: statebus certs ca %s)", err, dir)
	}
	if valid > 0 {
		r.NotBefore = time.Now().Add(-time.Minute)
		r.NotAfter = r.NotBefore.Add(valid)
	}
	certPEM, keyPEM, err := ca.Issue(r)
	if err != nil {
		return nil, err
	}
	return writeFiles(dir, []fileData{{cert, certPEM, 0o644}, {key, keyPEM, 0o600}})
}

type fileData struct {
	path string
	data []byte
	mode os.FileMode
}

// free fails if any of paths exists: certs never overwrites a key.
func free(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists; remove it first, or use another directory", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func writeFiles(dir string, files []fileData) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var written []string
	for _, f := range files {
		fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err == nil {
			_, err = fh.Write(f.data)
			if cerr := fh.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return written, err
		}
		written = append(written, f.path)
	}
	return written, nil
}
