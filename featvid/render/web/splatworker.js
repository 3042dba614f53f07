// Module worker: per-view depth sort of one frame's Gaussians off the main thread.
// Messages in:  {positions: Float32Array [N * 3], version}  (a new frame: kept here)
//               {row: [r20, r21, r22, t2], near, version, key}  (sort for a view)
// Message out:  {order: Uint32Array (transferred), version, key}
import { sortBackToFront } from "./splatsort.js";

let positions = null;
let version = -1;

self.onmessage = (e) => {
  const msg = e.data;
  if (msg.positions) {
    positions = msg.positions;
    version = msg.version;
    return;
  }
  if (!positions || msg.version !== version) return; // a sort for a frame already replaced
  const order = sortBackToFront(positions, msg.row, msg.near);
  self.postMessage({ order, version, key: msg.key }, [order.buffer]);
};
