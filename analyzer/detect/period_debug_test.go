package detect

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/aiops-dev/aiops/analyzer/nab"
)

func TestDebugPeriods(t *testing.T) {
	names, _ := nab.DataFiles("../../../shared/nab")
	for _, name := range names {
		s, _ := nab.ReadSeries(filepath.Join("../../../shared/nab/data", name))
		d := New(Config{})
		var ps []int
		last := -1
		for i := range s.Values {
			r := d.Observe(s.Times[i], s.Values[i])
			if r.Period != last {
				ps = append(ps, i, r.Period)
				last = r.Period
			}
		}
		fmt.Println(name, ps)
	}
}
