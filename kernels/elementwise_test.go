package kernels_test

import (
	"testing"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/kernels/kerneltest"
)

func TestAdd(t *testing.T)   { kerneltest.TestAdd(t, kernels.Add) }
func TestMul(t *testing.T)   { kerneltest.TestMul(t, kernels.Mul) }
func TestScale(t *testing.T) { kerneltest.TestScale(t, kernels.Scale) }

func TestElementwisePanics(t *testing.T) {
	a, b := make([]float32, 3), make([]float32, 4)
	for name, f := range map[string]func(){
		"Add":    func() { kernels.Add(a, a, b) },
		"Mul":    func() { kernels.Mul(b, a, a) },
		"Scale":  func() { kernels.Scale(a, b, 2) },
		"SiLU":   func() { kernels.SiLU(a, b) },
		"GELU":   func() { kernels.GELU(b, a) },
		"SwiGLU": func() { kernels.SwiGLU(a, a, b) },
		"GeGLU":  func() { kernels.GeGLU(a, b, a) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with mismatched lengths did not panic", name)
				}
			}()
			f()
		}()
	}
}
