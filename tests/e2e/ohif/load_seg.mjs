// Load a DICOM SEG the way OHIF's segmentation mode does (@cornerstonejs/adapters
// createFromDICOMSegBuffer), with a metadata provider built from the referenced instances.
// Usage: node load_seg.mjs SEG.dcm SOURCES.json  (a JSON list of the source instances' paths)
// Prints {"images": [{"referencedImageId": "imos:<index>", "pixels": [...]}], "segments": {...}}.
import fs from "node:fs";
import dcmjs from "dcmjs";
import { adaptersSEG } from "@cornerstonejs/adapters";
import { metaData } from "@cornerstonejs/core";

const [segPath, sourcesPath] = process.argv.slice(2);
const sources = JSON.parse(fs.readFileSync(sourcesPath, "utf8"));
const toAb = (buf) => buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
const instances = {};
const imageIds = sources.map((p, i) => {
  const dicom = dcmjs.data.DicomMessage.readFile(toAb(fs.readFileSync(p)));
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dicom.dict);
  const id = `imos:${i}`;
  instances[id] = ds;
  return id;
});
const custom = {};
const metadataProvider = {
  add(id, type, value) { custom[`${type}|${id}`] = value; },
  get(type, id) {
    if (custom[`${type}|${id}`]) return custom[`${type}|${id}`];
    const ds = instances[id];
    if (!ds) return undefined;
    const iop = ds.ImageOrientationPatient;
    if (type === "instance") return ds;
    if (type === "generalSeriesModule") return { seriesInstanceUID: ds.SeriesInstanceUID, modality: ds.Modality };
    if (type === "generalImageModule") return { sopInstanceUID: ds.SOPInstanceUID, instanceNumber: ds.InstanceNumber };
    if (type === "imagePlaneModule") return {
      rowCosines: iop.slice(0, 3), columnCosines: iop.slice(3, 6), imageOrientationPatient: iop,
      imagePositionPatient: ds.ImagePositionPatient, rows: ds.Rows, columns: ds.Columns,
      rowPixelSpacing: ds.PixelSpacing[0], columnPixelSpacing: ds.PixelSpacing[1], frameOfReferenceUID: ds.FrameOfReferenceUID,
    };
    return undefined;
  },
};
// cornerstone creates the labelmap images through its own registry, as in the viewer
metaData.addProvider((type, id) => metadataProvider.get(type, id), 10000);
const out = await adaptersSEG.Cornerstone3D.Segmentation.createFromDICOMSegBuffer(
  imageIds, toAb(fs.readFileSync(segPath)), { metadataProvider });
const images = (out.labelMapImages || []).flat();
const perImage = images.map((img) => {
  const px = img.getPixelData ? img.getPixelData() : img.voxelManager.getScalarData();
  return { referencedImageId: img.referencedImageId, pixels: Array.from(px) };
});
const segments = {};
for (const [k, v] of Object.entries(out.segMetadata?.data || {})) {
  if (v) segments[k] = { label: v.SegmentLabel, lab: v.RecommendedDisplayCIELabValue };
}
console.log(JSON.stringify({ images: perImage, segments }));
