package logs

import (
	"fmt"
	"time"

	"github.com/prometheus/common/model"
)

// Config bounds the log reads. Its YAML keys live under `logs`.
type Config struct {
	// MaxRange is the longest time range one request may cover.
	MaxRange model.Duration `yaml:"max_range"`
	// MaxLimit is the largest page a request may ask for.
	MaxLimit int `yaml:"max_limit"`
	// Timeout is the longest a request may take, its wait for a slot
	// included.
	Timeout model.Duration `yaml:"timeout"`
	// MaxConcurrency is how many requests read the store at once; others
	// wait for a slot.
	MaxConcurrency int `yaml:"max_concurrency"`
}

// DefaultConfig returns the defaults for every key.
func DefaultConfig() Config {
	return Config{
		MaxRange:       model.Duration(7 * 24 * time.Hour),
		MaxLimit:       5000,
		Timeout:        model.Duration(30 * time.Second),
		MaxConcurrency: 10,
	}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	switch {
	case c.MaxRange <= 0:
		return fmt.Errorf("logs.max_range: must be > 0, got %s", c.MaxRange)
	case c.MaxLimit <= 0:
		return fmt.Errorf("logs.max_limit: must be > 0, got %d", c.MaxLimit)
	case c.Timeout <= 0:
		return fmt.Errorf("logs.timeout: must be > 0, got %s", c.Timeout)
	case c.MaxConcurrency <= 0:
		return fmt.Errorf("logs.max_concurrency: must be > 0, got %d", c.MaxConcurrency)
	}
	return nil
}
