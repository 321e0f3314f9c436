package vault

import "fmt"

// A grid's master key has generations: 0 is the key made at bootstrap,
// and each rotation seals the next key with the one before it. The chain
// of sealed keys is in the replicated state, so a voter that holds any
// generation (an old key on its disk, or one a locked grid's unlock key
// opened) derives the current one, and nobody holding no key learns any.

// chainContext binds a sealed key to its generation.
func chainContext(gen uint64) string { return fmt.Sprintf("master-key/generation-%d", gen) }

// NextKey makes the master key of generation gen+1 and returns it with
// its link in the chain: the new key sealed with cur (generation gen).
func NextKey(cur []byte, gen uint64) (next, link []byte, err error) {
	s, err := NewSealer(cur)
	if err != nil {
		return nil, nil, err
	}
	if next, err = NewKey(); err != nil {
		return nil, nil, err
	}
	if link, err = s.Seal(next, chainContext(gen+1)); err != nil {
		return nil, nil, err
	}
	return next, link, nil
}

// Derive walks chain from key (of generation gen) to the last generation,
// len(chain): chain[i] is generation i+1 sealed with generation i.
func Derive(key []byte, gen uint64, chain [][]byte) ([]byte, error) {
	if gen > uint64(len(chain)) {
		return nil, fmt.Errorf("master key generation %d is newer than the grid's %d: this state is behind", gen, len(chain))
	}
	for g := gen; g < uint64(len(chain)); g++ {
		s, err := NewSealer(key)
		if err != nil {
			return nil, err
		}
		if key, err = s.Open(chain[g], chainContext(g+1)); err != nil {
			return nil, fmt.Errorf("open master key generation %d with generation %d: %w", g+1, g, err)
		}
	}
	return key, nil
}
