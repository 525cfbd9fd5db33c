//go:build !soakfaults

package main

import "github.com/rulegen/rulegen/pkg/sync"

// withFaults returns the kernel writer unchanged: fault injection exists
// only in a soak build (go build -tags soakfaults, see faults_soakfaults.go).
func withFaults(k sync.Kernel) sync.Kernel { return k }
