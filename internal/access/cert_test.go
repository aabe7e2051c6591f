package access

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestCertIdentity(t *testing.T) {
	u, _ := url.Parse("spiffe://example.org/sensor")
	cert := &x509.Certificate{
		SerialNumber:   big.NewInt(7),
		Subject:        pkix.Name{CommonName: "gw-1", Organization: []string{"Plant"}},
		DNSNames:       []string{"gw-1.example.org"},
		URIs:           []*url.URL{u},
		EmailAddresses: []string{"ops@example.org"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.7")},
	}
	id := CertIdentity(cert)
	want := []string{"CN=gw-1", "DNS:gw-1.example.org", "URI:spiffe://example.org/sensor", "EMAIL:ops@example.org", "IP:10.0.0.7"}
	if id.Name != "CN=gw-1" || !reflect.DeepEqual(id.Names, want) {
		t.Fatalf("identity %+v", id)
	}
	// Without a common name the first SAN names it; without any name, the
	// serial number does, and no rule can match it.
	noCN := CertIdentity(&x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"a.example"}})
	if noCN.Name != "DNS:a.example" {
		t.Errorf("no CN: %+v", noCN)
	}
	none := CertIdentity(&x509.Certificate{SerialNumber: big.NewInt(42)})
	if none.Name != "serial 42" || len(none.Names) != 0 {
		t.Errorf("no names: %+v", none)
	}
	// A certificate with very many names keeps a bounded number.
	many := &x509.Certificate{SerialNumber: big.NewInt(1)}
	for range 1000 {
		many.DNSNames = append(many.DNSNames, "x.example")
	}
	if n := len(CertIdentity(many).Names); n != maxNames {
		t.Errorf("kept %d names, want %d", n, maxNames)
	}
}

func TestCertRules(t *testing.T) {
	p := Policy{
		Rules: []Rule{
			{UID: 1000, Register: []string{"local-*"}},
			{Cert: "CN=gw-1", Register: []string{"sensor-*"}, SendTo: []string{"controller"}},
			{Cert: "DNS:gw-1.example.org", Register: []string{"other-*"}},
		},
		Reserve: []Reservation{{Cert: "CN=gw-1", IDs: []string{"sensor-*"}}, {UID: 0, IDs: []string{"root-*"}}},
	}
	c, err := New(p, 999, 998)
	if err != nil {
		t.Fatal(err)
	}
	gw := Remote(&CertID{Name: "CN=gw-1", Names: []string{"CN=gw-1", "DNS:gw-1.example.org"}})
	other := Remote(&CertID{Name: "CN=gw-2", Names: []string{"CN=gw-2"}})
	root := Local(1, 0, 0)

	r := c.Rule(gw)
	if r == nil || r.Cert != "CN=gw-1" {
		t.Fatalf("the first rule naming one of the certificate's names applies, got %+v", r)
	}
	if err := r.MayRegister("controller"); err == nil || err.Error() != "Access denied: CN=gw-1 may not register controller" {
		t.Errorf("register: %v", err)
	}
	if err := r.MaySend("sensor-2"); err == nil || err.Error() != "Access denied: CN=gw-1 may not send to sensor-2" {
		t.Errorf("send: %v", err)
	}
	if c.Rule(other) != nil {
		t.Error("a certificate no rule names is unrestricted")
	}
	// A certificate rule is not a rule for uid 0 (its Uid is zero).
	if c.Rule(root) != nil {
		t.Error("a certificate rule restricts root")
	}
	if c.Rule(Local(-1, 1000, -1)) == nil {
		t.Error("uid rule lost")
	}

	// Reservations: a certificate's ids are its own; root cannot take
	// them, and the certificate cannot take root's.
	if err := c.MayHold(gw, "sensor-1"); err != nil {
		t.Errorf("owner: %v", err)
	}
	if err := c.MayHold(root, "sensor-1"); err == nil || err.Error() != "Access denied: machine id sensor-1 is reserved for CN=gw-1" {
		t.Errorf("root took a certificate's id: %v", err)
	}
	if err := c.MayHold(other, "sensor-1"); err == nil {
		t.Error("another certificate took the id")
	}
	if err := c.MayHold(gw, "root-1"); err == nil || err.Error() != "Access denied: machine id root-1 is reserved for uid 0" {
		t.Errorf("a certificate took root's id: %v", err)
	}
	if err := c.MayHold(root, "root-1"); err != nil {
		t.Errorf("root: %v", err)
	}

	// Without AllowCerts every verified certificate connects; with it,
	// only those it names.
	if err := c.MayConnect(other); err != nil {
		t.Errorf("no AllowCerts: %v", err)
	}
	only, err := New(Policy{AllowCerts: []string{"DNS:gw-1.example.org"}}, 999, 998)
	if err != nil {
		t.Fatal(err)
	}
	if err := only.MayConnect(gw); err != nil {
		t.Errorf("listed SAN: %v", err)
	}
	if err := only.MayConnect(other); err == nil || err.Error() != "Access denied: certificate CN=gw-2 is not allowed to connect (not in Access:AllowCerts)" {
		t.Errorf("unlisted: %v", err)
	}
	// AllowAny is for local users, not for certificates.
	anyLocal, _ := New(Policy{AllowAny: true, AllowCerts: []string{"CN=x"}}, 999, 998)
	if anyLocal.MayConnect(other) == nil {
		t.Error("AllowAny admitted a certificate AllowCerts does not list")
	}
}

func TestCertPolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{Rules: []Rule{{Cert: "gw-1"}}}, `certificate name "gw-1" must start with CN=, DNS:, URI:, EMAIL: or IP:`},
		{Policy{Rules: []Rule{{Cert: "CN="}}}, `certificate name "CN=" must start with`},
		{Policy{Rules: []Rule{{Cert: "CN=a", UID: 5}}}, "a rule names a Uid or a Cert, not both"},
		{Policy{Rules: []Rule{{Cert: "CN=a"}, {Cert: "CN=a"}}}, "two rules for CN=a"},
		{Policy{Rules: []Rule{{Cert: "CN=a", SendTo: []string{"["}}}}, `access rule for CN=a: bad pattern "["`},
		{Policy{AllowCerts: []string{"sensor"}}, `access AllowCerts: certificate name "sensor"`},
		{Policy{Reserve: []Reservation{{Cert: "X=1", IDs: []string{"a"}}}}, `access reservation: certificate name "X=1"`},
		{Policy{Reserve: []Reservation{{Cert: "CN=a", UID: 3}}}, "a reservation names a Uid or a Cert, not both"},
	} {
		if _, err := New(tc.p, 0, 0); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.p, err, tc.want)
		}
	}
}
