package server

// ParkedConnections returns how many connections have their reader
// parked now (internal/park): no goroutine of their own.
func (s *Server) ParkedConnections() int { return s.parker.Len() }
