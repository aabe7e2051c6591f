package config

import (
	"strconv"
	"strings"
	"time"

	"github.com/statebus/statebus/internal/durable"
)

// durableSettings configure durable mailboxes (docs/durability.md); the
// file's MessageBus:Durable (a list of id patterns) is read in apply.
var durableSettings = []setting{
	{"DurableDir", "STATEBUS_DURABLE_DIR", "durable-dir", "directory of the durable mailbox store (docs/durability.md; with Cluster the mailboxes live in the federation's JetStream and this only turns them on); \"\" or off turns durable mailboxes off (default off)",
		func(s *Settings, v string) error {
			if strings.EqualFold(v, "off") {
				v = ""
			}
			s.Server.Durable.Store.Dir = v
			return nil
		}},
	{"DurableSync", "STATEBUS_DURABLE_SYNC", "durable-sync", "always: acknowledge a stored event only after fsync (group commit); interval: after the write, fsync every DurableSyncIntervalSeconds (default always)",
		func(s *Settings, v string) error {
			s.Server.Durable.Store.Sync = durable.SyncPolicy(strings.ToLower(v))
			return nil
		}},
	{"DurableSyncIntervalSeconds", "STATEBUS_DURABLE_SYNC_INTERVAL_SECONDS", "durable-sync-interval", "seconds between flushes with DurableSync interval (default 1)",
		secondsSetting(func(s *Settings, d time.Duration) { s.Server.Durable.Store.SyncInterval = d })},
	{"DurableMaxAgeSeconds", "STATEBUS_DURABLE_MAX_AGE_SECONDS", "durable-max-age", "seconds a durable mailbox keeps an event; unprocessed ones then go to the dead letters (default 86400)",
		secondsSetting(func(s *Settings, d time.Duration) { s.Server.Durable.Store.Retention.MaxAge = d })},
	{"DurableMaxEvents", "STATEBUS_DURABLE_MAX_EVENTS", "durable-max-events", "events a durable mailbox keeps; with that many unprocessed, senders are refused (default 100000)",
		int64Setting(func(s *Settings, n int64) { s.Server.Durable.Store.Retention.MaxEvents = n })},
	{"DurableMaxBytes", "STATEBUS_DURABLE_MAX_BYTES", "durable-max-bytes", "event bytes a durable mailbox keeps; as DurableMaxEvents (default 67108864)",
		int64Setting(func(s *Settings, n int64) { s.Server.Durable.Store.Retention.MaxBytes = n })},
	{"DurableMaxMailboxes", "STATEBUS_DURABLE_MAX_MAILBOXES", "durable-max-mailboxes", "durable mailboxes the store holds (default 1024)",
		intSetting(func(s *Settings, n int) { s.Server.Durable.Store.MaxMailboxes = n })},
	{"DurableMaxMailboxesPerUid", "STATEBUS_DURABLE_MAX_MAILBOXES_PER_UID", "durable-max-mailboxes-per-uid", "durable mailboxes one user may declare; root and the service's user are exempt (default 64)",
		intSetting(func(s *Settings, n int) { s.Server.Durable.Store.MaxMailboxesPerUID = n })},
	{"DurableMaxDeliveries", "STATEBUS_DURABLE_MAX_DELIVERIES", "durable-max-deliveries", "refusals of one event before it goes to the dead letters (default 5)",
		intSetting(func(s *Settings, n int) { s.Server.Durable.Store.MaxDeliveries = n })},
	{"DurableMaxDeadLetters", "STATEBUS_DURABLE_MAX_DEAD_LETTERS", "durable-max-dead-letters", "dead letters kept; past it the oldest is deleted (default 10000)",
		intSetting(func(s *Settings, n int) { s.Server.Durable.Store.MaxDeadLetters = n })},
	{"DurableMaxStoreBytes", "STATEBUS_DURABLE_MAX_STORE_BYTES", "durable-max-store-bytes", "bytes the whole store may take on disk; past it senders are refused (default 4294967296)",
		int64Setting(func(s *Settings, n int64) { s.Server.Durable.Store.MaxStoreBytes = n })},
}

func init() { settings = append(settings, durableSettings...) }

func int64Setting(f func(*Settings, int64)) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		f(s, n)
		return err
	}
}
