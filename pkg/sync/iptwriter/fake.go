package iptwriter

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// FakeJumps is a JumpRules that keeps rules in memory, for tests: a rule
// inserted twice is there twice, as in the kernel. A writer given a fake
// Runner and no JumpRules uses an empty one, so that a fake never lets the
// writer reach the real tables through go-iptables.
type FakeJumps struct {
	mu    sync.Mutex
	rules map[string]int // fakeKey -> copies
	// Err, when set, is what every call returns.
	Err error
	// Calls are the calls made, as "-C table chain rulespec" or "-D ...".
	Calls []string
}

var _ JumpRules = &FakeJumps{}

func fakeKey(table, chain string, rulespec []string) string {
	q := make([]string, len(rulespec))
	for i, a := range rulespec {
		q[i] = strconv.Quote(a)
	}
	return table + " " + chain + " " + strings.Join(q, " ")
}

// Insert adds one copy of a rule.
func (f *FakeJumps) Insert(table, chain string, rulespec ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rules == nil {
		f.rules = map[string]int{}
	}
	f.rules[fakeKey(table, chain, rulespec)]++
}

// Count returns how many copies of a rule there are.
func (f *FakeJumps) Count(table, chain string, rulespec ...string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rules[fakeKey(table, chain, rulespec)]
}

// Exists implements JumpRules.
func (f *FakeJumps) Exists(table, chain string, rulespec ...string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fakeKey(table, chain, rulespec)
	f.Calls = append(f.Calls, "-C "+k)
	if f.Err != nil {
		return false, f.Err
	}
	return f.rules[k] > 0, nil
}

// Delete implements JumpRules.
func (f *FakeJumps) Delete(table, chain string, rulespec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fakeKey(table, chain, rulespec)
	f.Calls = append(f.Calls, "-D "+k)
	if f.Err != nil {
		return f.Err
	}
	if f.rules[k] == 0 {
		return fmt.Errorf("fake iptables -t %s -D %s: Bad rule (does a matching rule exist in that chain?)", table, chain)
	}
	f.rules[k]--
	return nil
}
