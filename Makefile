# statebus: build and install. The README's commands (go run, go test) need
# none of this; it is for putting statebusd on a machine.
#
#   make build                      binaries in bin/, version from git
#   make install                    binaries, systemd units, default config
#   make install PREFIX=/usr        system paths for a package
#   make install DESTDIR=/tmp/root  staged install (packaging, tests)

PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
SYSCONFDIR  ?= /etc
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DOCDIR      ?= $(PREFIX)/share/doc/statebus
GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

LDFLAGS := -X github.com/statebus/statebus/internal/version.Version=$(VERSION)
# -buildvcs=auto stamps the commit (statebusd --version) even where
# GOFLAGS turns it off; outside a git checkout it quietly does nothing.
GOBUILD := $(GO) build -buildvcs=auto -trimpath -ldflags "$(LDFLAGS)"

.PHONY: all build install uninstall test clean

all: build

build:
	$(GOBUILD) -o bin/ ./cmd/...

test:
	$(GO) test -race ./...

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(SYSCONFDIR)/statebus $(DESTDIR)$(DOCDIR)
	install -m 0755 bin/statebusd bin/statebus $(DESTDIR)$(BINDIR)/
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/etc/statebus/|$(SYSCONFDIR)/statebus/|g' \
		-e 's|/usr/local/share/doc/statebus/|$(DOCDIR)/|g' \
		packaging/systemd/statebusd.service > $(DESTDIR)$(UNITDIR)/statebusd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/statebusd.service
	install -m 0644 packaging/systemd/statebusd.socket $(DESTDIR)$(UNITDIR)/statebusd.socket
	install -m 0644 packaging/systemd/statebus.sysusers $(DESTDIR)$(SYSUSERSDIR)/statebus.conf
	install -m 0644 docs/operations.md $(DESTDIR)$(DOCDIR)/operations.md
	@# An existing config is the administrator's: never overwrite it.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/statebus/appsettings.json ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/statebus/appsettings.json; the default is packaging/appsettings.json"; \
	else \
		install -m 0644 packaging/appsettings.json $(DESTDIR)$(SYSCONFDIR)/statebus/appsettings.json; \
	fi
	@echo "installed; next: systemd-sysusers && systemctl daemon-reload && systemctl enable --now statebusd (docs/operations.md)"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/statebusd $(DESTDIR)$(BINDIR)/statebus \
		$(DESTDIR)$(UNITDIR)/statebusd.service $(DESTDIR)$(UNITDIR)/statebusd.socket \
		$(DESTDIR)$(SYSUSERSDIR)/statebus.conf $(DESTDIR)$(DOCDIR)/operations.md
	@echo "left $(DESTDIR)$(SYSCONFDIR)/statebus/appsettings.json in place"

clean:
	rm -rf bin
