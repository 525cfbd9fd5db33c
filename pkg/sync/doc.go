// Package sync keeps the kernel in step with the cluster: it renders the
// desired rules for a backend and family, and (in later parts) watches the
// API server, tracks changes and applies them.
package sync
