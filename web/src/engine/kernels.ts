/**
 * What the wasm backend lacks for training convolutional models: TF.js 4.22's wasm backend has
 * no `Conv2DBackpropFilter` kernel, so the gradient of a Conv2D's filter cannot be computed
 * there. The Conv2D gradient is registered again here: on wasm, the filter's gradient is an
 * im2col product (one matrix product per filter tap, with wasm's SIMD MatMul); on the other
 * backends it is TF.js' own kernel, as before. The input's gradient is TF.js' own everywhere.
 */

import * as tf from "@tensorflow/tfjs";

type Pad = "valid" | "same" | number | [[number, number], [number, number], [number, number], [number, number]];

interface Conv2DAttrs {
  strides: [number, number] | number;
  pad: Pad;
  dataFormat: "NHWC" | "NCHW";
  dilations: [number, number] | number;
  dimRoundingMode?: "floor" | "round" | "ceil";
}

/** dL/dfilter of a NHWC Conv2D (dilation 1) by im2col: sum over taps of patchᵀ·dy. */
export function conv2dFilterGradient(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: [number, number, number, number],
  strides: [number, number] | number,
  pad: Pad,
  dimRoundingMode?: "floor" | "round" | "ceil",
): tf.Tensor4D {
  return tf.tidy(() => {
    const info = tf.backend_util.computeConv2DInfo(
      x.shape, filterShape, strides, 1, pad, dimRoundingMode, false, "channelsLast",
    );
    const { top, bottom, left, right } = info.padInfo;
    const padded = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]]);
    const [n, , , channels] = x.shape;
    const { outHeight, outWidth, strideHeight, strideWidth, filterHeight, filterWidth } = info;
    const rows = n * outHeight * outWidth;
    const dy2 = dy.reshape([rows, info.outChannels]);
    const taps: tf.Tensor[] = [];
    for (let i = 0; i < filterHeight; i++) {
      for (let j = 0; j < filterWidth; j++) {
        const patch = tf.stridedSlice(
          padded,
          [0, i, j, 0],
          [n, i + (outHeight - 1) * strideHeight + 1, j + (outWidth - 1) * strideWidth + 1, channels],
          [1, strideHeight, strideWidth, 1],
        );
        taps.push(tf.matMul(patch.reshape([rows, channels]), dy2, true, false));
      }
    }
    return tf.stack(taps).reshape(filterShape);
  });
}

let installed = false;

/** Register the Conv2D gradient above (once per page). */
export function installTrainingKernels(): void {
  if (installed) return;
  installed = true;
  tf.registerGradient({
    kernelName: "Conv2D",
    inputsToSave: ["x", "filter"],
    gradFunc: (dy, saved, attrs) => {
      const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
      const { strides, pad, dataFormat, dilations, dimRoundingMode } = attrs as unknown as Conv2DAttrs;
      const dilation = typeof dilations === "number" ? [dilations, dilations] : dilations;
      if (dilation.some((d) => d !== 1)) {
        throw new Error(`gradient of Conv2D with dilations ${String(dilations)}: not supported by TF.js`);
      }
      const filterShape = filter.shape;
      const dy4 = dy as tf.Tensor4D;
      const useIm2col = tf.getBackend() === "wasm" && dataFormat === "NHWC";
      return {
        x: () =>
          tf.engine().runKernel<tf.Tensor4D>("Conv2DBackpropInput", { dy: dy4, filter }, {
            strides, pad, dataFormat, dimRoundingMode, inputShape: x.shape,
          } as unknown as tf.NamedAttrMap),
        filter: () =>
          useIm2col
            ? conv2dFilterGradient(x, dy4, filterShape, strides, pad, dimRoundingMode)
            : tf.engine().runKernel<tf.Tensor4D>("Conv2DBackpropFilter", { x, dy: dy4 }, {
                strides, pad, dataFormat, dimRoundingMode, filterShape,
              } as unknown as tf.NamedAttrMap),
      };
    },
  });
}
