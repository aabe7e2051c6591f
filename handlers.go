package statebus

// WithHandler adds h for events named name ("*" for every event), as
// OnEvent does, but before Dial registers the id: an event sent the moment
// the id appears finds it. (A handler added with OnEvent after Dial
// returns misses what arrived in between.)
func WithHandler(name string, h Handler) Option {
	return func(o *options) {
		o.handlers = append(o.handlers, func(c *Client) { c.OnEvent(name, h) })
	}
}

// WithRequestHandler sets the handler that answers requests named name,
// as HandleRequest does, but before Dial registers the id: a request sent
// the moment the id appears is answered by it, not refused for want of a
// handler.
func WithRequestHandler(name string, h RequestHandler) Option {
	return func(o *options) {
		o.handlers = append(o.handlers, func(c *Client) { c.HandleRequest(name, h) })
	}
}
