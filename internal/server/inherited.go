package server

import "context"

// ShutdownKeepSocket is Shutdown for a server serving a socket it did not
// create, one systemd passed by socket activation: the socket file stays
// where it is, because systemd still listens on it and will pass it to the
// next start. Shutdown would remove it, leaving systemd's socket
// unreachable by path.
func (s *Server) ShutdownKeepSocket(ctx context.Context) error {
	s.sockInfo = nil
	return s.Shutdown(ctx)
}
