package weights

import (
	"fmt"
	"io"

	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/quant"
)

// Convert writes the model in src to w with its 2-D weight matrices
// converted to type t (dequantized to float32, then quantized with t's
// reference quantizer). Vectors (norms, biases) keep their type. A matrix
// whose rows are not a whole number of t's blocks falls back to Q8_0, then
// F16. Metadata is copied, with general.file_type updated. Memory use is
// one row-block of the largest tensor, whatever the model size.
func Convert(w io.Writer, src *gguf.File, t quant.Type) error {
	if !t.CanQuantize() {
		return fmt.Errorf("%w: cannot write %s", quant.ErrUnsupported, t)
	}
	md := &gguf.Metadata{}
	for _, kv := range src.Metadata.KVs {
		if kv.Key != gguf.KeyAlignment {
			md.Set(kv.Key, kv.Value)
		}
	}
	md.Set("general.file_type", gguf.MustValue(fileType(t)))
	infos := make([]gguf.TensorInfo, len(src.Tensors))
	for i, ti := range src.Tensors {
		infos[i] = gguf.TensorInfo{Name: ti.Name, Type: ti.Type, Dims: ti.Dims}
		if len(ti.Dims) < 2 || ti.Type == t {
			continue
		}
		if !ti.Type.CanDequantize() {
			return fmt.Errorf("%w: tensor %s of type %s", quant.ErrUnsupported, ti.Name, ti.Type)
		}
		for _, alt := range []quant.Type{t, quant.Q8_0, quant.F16} {
			if ti.Dims[0]%int64(alt.BlockSize()) == 0 {
				infos[i].Type = alt
				break
			}
		}
	}
	gw, err := gguf.NewWriter(w, md, infos)
	if err != nil {
		return err
	}
	for i := range src.Tensors {
		in, out := &src.Tensors[i], infos[i]
		data := src.TensorData(in)
		if in.Type == out.Type {
			if _, err := gw.Write(data); err != nil {
				return err
			}
			continue
		}
		// Convert a group of whole rows at a time.
		rowElems := in.Dims[0]
		inRow, _ := in.Type.RowSize(rowElems)
		outRow, _ := out.Type.RowSize(rowElems)
		rows := in.Elements() / rowElems
		group := max(1, (1<<18)/rowElems)
		vals := make([]float32, group*rowElems)
		buf := make([]byte, group*outRow)
		for r := int64(0); r < rows; r += group {
			g := min(group, rows-r)
			v, b := vals[:g*rowElems], buf[:g*outRow]
			if err := quant.Dequantize(in.Type, v, data[r*inRow:(r+g)*inRow]); err != nil {
				return fmt.Errorf("tensor %s: %w", in.Name, err)
			}
			if err := quant.Quantize(out.Type, b, v); err != nil {
				return fmt.Errorf("tensor %s: %w", in.Name, err)
			}
			if _, err := gw.Write(b); err != nil {
				return err
			}
		}
	}
	return gw.Close()
}
