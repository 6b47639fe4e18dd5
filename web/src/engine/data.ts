/**
 * Local data as a task describes it. The rules and the messages are those of the Python client
 * (`disco.client.data.tabular` / `images`), so the page and `disco train` explain a problem in
 * the same words; the page also lists every bad line, not only the first.
 */

import { parseCSV } from "./csv.js";
import { DataError, MAX_ISSUES } from "./errors.js";
import type {
  DataIssue,
  Dataset,
  ImageInput,
  ImageOptions,
  MissingPolicy,
  TabularOptions,
  Task,
} from "./types.js";

const IMAGE_SUFFIXES = [".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp"];

function fileName(file: Blob): string {
  return "name" in file && typeof file.name === "string" ? file.name : "data.csv";
}

/** Python's `repr` of a short string, as the Python client quotes names in its messages. */
function quote(text: string): string {
  return `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

/** Python's float() syntax (no underscores): a number, "inf"/"infinity" or "nan". */
const FLOAT = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)$/i;

/** "line 4" / "lines 4, 9, ... (3 more)", as the Python client lists lines. */
function lineList(lines: readonly number[], shown = 10): string {
  const text = lines.slice(0, shown).join(", ");
  const more = lines.length > shown ? `, ... (${lines.length - shown} more)` : "";
  return `line${lines.length > 1 ? "s" : ""} ${text}${more}`;
}

class IssueList {
  readonly issues: DataIssue[] = [];
  count = 0;
  add(issue: DataIssue): void {
    this.count++;
    if (this.issues.length < MAX_ISSUES) this.issues.push(issue);
  }
}

/**
 * The task's input (and, when `labelled`, output) columns of a CSV with a header row.
 *
 * Empty cells are refused by default (a model trained on them would post NaN weights);
 * `missing: "drop"` skips such rows and `missing: "mean"` fills them with the column mean.
 */
export async function readTabular(
  task: Task,
  file: Blob,
  options: TabularOptions = {},
): Promise<Dataset> {
  const info = task.trainingInformation;
  const inputs = info.inputColumns ?? [];
  const outputs = options.labelled === false ? [] : (info.outputColumns ?? []);
  return tabularFromText(fileName(file), await file.text(), inputs, outputs, options.missing);
}

/** `readTabular` on CSV text already read (`name` is the file's name, for messages). */
export function tabularFromText(
  name: string,
  text: string,
  inputColumns: readonly string[],
  outputColumns: readonly string[],
  missing: MissingPolicy = "error",
): Dataset {
  const wanted = [...inputColumns, ...outputColumns];
  const records = parseCSV(text);
  const first = records[0];
  if (first === undefined) throw new DataError(`${name}: the file is empty`, name);
  const header = first.cells.map((cell) => cell.trim());
  const absent = wanted.filter((column) => !header.includes(column));
  if (absent.length > 0) {
    throw new DataError(
      `${name}: missing column(s) ${absent.map(quote).join(", ")} ` +
        `(the task needs ${wanted.join(", ")}; the file has ${header.join(", ")})`,
      name,
    );
  }
  const index = wanted.map((column) => header.indexOf(column));
  const problems = new IssueList();
  const rows: number[][] = [];
  const lines: number[] = [];
  const misshapen: number[] = [];
  for (const { cells: record, line } of records.slice(1)) {
    if (record.length === 0 || record.every((cell) => cell.trim() === "")) continue;
    if (record.length !== header.length) {
      if (missing === "drop") {
        misshapen.push(line);
      } else {
        problems.add({
          file: name,
          line,
          message:
            `${name}, line ${line}: ${record.length} fields, the header has ${header.length} ` +
            "(use missing='drop' to skip such rows)",
        });
      }
      continue;
    }
    const row: number[] = [];
    for (const i of index) {
      const cell = record[i] ?? "";
      const column = header[i] ?? "";
      const text = cell.trim();
      if (text === "" || /^[+-]?nan$/i.test(text)) {
        row.push(NaN);
      } else if (!FLOAT.test(text)) {
        problems.add({
          file: name,
          line,
          column,
          message: `${name}, line ${line}, column ${quote(column)}: ${quote(cell)} is not a number`,
        });
        row.push(NaN);
      } else if (/inf/i.test(text)) {
        problems.add({
          file: name,
          line,
          column,
          message: `${name}, line ${line}, column ${quote(column)}: infinite value`,
        });
        row.push(NaN);
      } else {
        row.push(Number(text));
      }
    }
    rows.push(row);
    lines.push(line);
  }
  if (problems.count > 0) throw new DataError(problems.issues);
  if (rows.length === 0) throw new DataError(`${name}: no data rows`, name);

  const notes: string[] = [];
  if (misshapen.length > 0) {
    notes.push(
      `skipped ${misshapen.length} row(s) whose number of fields differs from the header's ` +
        `${header.length} (${lineList(misshapen)})`,
    );
  }
  const holes = rows.map((row) => row.map(Number.isNaN));
  const holed = holes.map((row) => row.some(Boolean));
  const holedRows = holed.filter(Boolean).length;
  let kept = rows;
  let keptLines = lines;
  if (holedRows > 0) {
    if (missing === "error") {
      const r = holed.indexOf(true);
      const c = (holes[r] ?? []).indexOf(true);
      const issues: DataIssue[] = [
        {
          file: name,
          line: lines[r],
          column: wanted[c],
          message:
            `${name}: ${holedRows} row(s) have empty cells, first at line ${lines[r]}, ` +
            `column ${quote(wanted[c] ?? "")} (use missing='drop' or 'mean')`,
        },
      ];
      holes.forEach((row, i) => {
        const columns = wanted.filter((_, j) => row[j]);
        if (columns.length > 0 && issues.length < MAX_ISSUES) {
          issues.push({
            file: name,
            line: lines[i],
            column: columns[0],
            message: `${name}, line ${lines[i]}: empty cell(s) in ${columns.map(quote).join(", ")}`,
          });
        }
      });
      const error = new DataError(issues);
      error.message = issues[0]?.message ?? error.message;
      throw error;
    }
    if (missing === "drop") {
      kept = rows.filter((_, i) => !holed[i]);
      keptLines = lines.filter((_, i) => !holed[i]);
      if (kept.length === 0) throw new DataError(`${name}: every row has an empty cell`, name);
      notes.push(
        `dropped ${holedRows} row(s) with empty cells (${lineList(lines.filter((_, i) => holed[i]))})`,
      );
    } else {
      const means = wanted.map((column, j) => {
        const values = rows.map((row) => row[j] ?? NaN).filter((v) => !Number.isNaN(v));
        if (values.length === 0) {
          throw new DataError(`${name}: column ${quote(column)} has no value at all`, name);
        }
        return values.reduce((a, b) => a + b, 0) / values.length;
      });
      kept = rows.map((row) => row.map((v, j) => (Number.isNaN(v) ? (means[j] ?? 0) : v)));
      notes.push(`${holedRows} row(s) had empty cells, filled with the column's mean`);
    }
  }

  const nIn = inputColumns.length;
  const nOut = outputColumns.length;
  const x = new Float32Array(kept.length * nIn);
  const y = nOut > 0 ? new Float32Array(kept.length * nOut) : null;
  kept.forEach((row, i) => {
    for (let j = 0; j < nIn; j++) x[i * nIn + j] = row[j] ?? 0;
    if (y !== null) for (let j = 0; j < nOut; j++) y[i * nOut + j] = row[nIn + j] ?? 0;
  });
  return {
    kind: "tabular",
    size: kept.length,
    sampleShape: [nIn],
    x,
    y,
    sources: keptLines.map(String),
    notes,
  };
}

// ------------------------------------------------------------------------------ images

/** Channels of an image model's input (last axis of its input shape), default 3. */
export function inputChannels(model: { inputs: { shape: readonly (number | null)[] }[] }): number {
  const shape = model.inputs[0]?.shape;
  const last = shape?.[shape.length - 1];
  return shape?.length === 4 && typeof last === "number" ? last : 3;
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** The label folder of `path` (`.../label/name.png`), or null for a file picked on its own. */
function parentFolder(path: string): string | null {
  const parts = path.split("/").filter((p) => p !== "");
  return parts.length >= 2 ? (parts[parts.length - 2] ?? null) : null;
}

function isImage(path: string): boolean {
  const lower = path.toLowerCase();
  return IMAGE_SUFFIXES.some((suffix) => lower.endsWith(suffix));
}

async function labelsFromCSV(
  labelsCsv: Blob,
  images: readonly ImageInput[],
): Promise<[ImageInput, string][]> {
  const name = fileName(labelsCsv);
  const byName = new Map<string, ImageInput>();
  for (const image of images) {
    byName.set(image.path, image);
    byName.set(baseName(image.path), image);
  }
  const pairs: [ImageInput, string][] = [];
  const problems = new IssueList();
  parseCSV(await labelsCsv.text()).forEach(({ cells: row, line }) => {
    if (row.length === 0) return;
    if (row.length < 2) {
      problems.add({ file: name, line, message: `${name}, line ${line}: expected 'file,label'` });
      return;
    }
    const file = (row[0] ?? "").trim();
    const label = (row[1] ?? "").trim();
    const candidates = [file, ...IMAGE_SUFFIXES.map((suffix) => `${file}${suffix}`)];
    const found = candidates.map((c) => byName.get(c)).find((c) => c !== undefined);
    if (found === undefined) {
      if (line === 1) return; // a header row (e.g. 'file_name,class'): it names no image
      problems.add({
        file: name,
        line,
        message: `${name}, line ${line}: no image ${quote(file)} among the files given`,
      });
      return;
    }
    pairs.push([found, label]);
  });
  if (problems.count > 0) throw new DataError(problems.issues);
  return pairs;
}

/** RGBA pixels of an image at its own size (decoded by the browser). */
async function decode(image: ImageInput): Promise<ImageBitmap> {
  try {
    return await createImageBitmap(image.file);
  } catch (error) {
    throw new DataError(
      `${baseName(image.path)}: not a readable image (${String(error)})`,
      image.path,
    );
  }
}

/** `bitmap` drawn at width×height (bilinear when it is resized), as RGBA bytes. */
function pixels(bitmap: ImageBitmap, width: number, height: number): Uint8ClampedArray {
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  if (context === null) throw new Error("no 2D canvas in this browser");
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = "medium";
  context.drawImage(bitmap, 0, 0, width, height);
  return context.getImageData(0, 0, width, height).data;
}

/**
 * Images for an image task: one sub-folder per label (the parent folder of each path), or the
 * files a labels CSV lists (`file_name,label`, with or without the extension; a header row is
 * skipped). As the task's `preprocessingFunctions` say, pixels are scaled to [0, 1]
 * ("normalize") and images resized ("resize"); otherwise an image of another size than
 * IMAGE_H×IMAGE_W is refused unless `resize` (then resized, bilinear). `channels` is the model's
 * input channels (1: grey levels with PIL's "L" weights, 3: RGB).
 */
export async function readImages(
  task: Task,
  images: readonly ImageInput[],
  options: ImageOptions = {},
): Promise<Dataset> {
  const info = task.trainingInformation;
  const height = info.IMAGE_H;
  const width = info.IMAGE_W;
  const labelList = (info.LABEL_LIST ?? []).map(String);
  const labelled = options.labelled !== false;
  const channels = options.channels ?? 3;
  // as the task says (DISCO's preprocessingFunctions), like the JS and Python clients
  const preprocessing = info.preprocessingFunctions ?? [];
  const scale = preprocessing.includes("normalize") ? 255 : 1;
  const resize = options.resize === true || preprocessing.includes("resize");
  if (height === undefined || width === undefined) {
    throw new DataError("the task gives no IMAGE_H / IMAGE_W: cannot size the images");
  }
  if (labelled && labelList.length === 0) {
    throw new DataError("the task has no LABEL_LIST: cannot map image labels to classes");
  }
  const candidates = images.filter((image) => isImage(image.path));
  let pairs: [ImageInput, string | null][];
  if (!labelled) {
    pairs = candidates.map((image) => [image, null]);
  } else if (options.labelsCsv !== undefined) {
    pairs = await labelsFromCSV(options.labelsCsv, candidates);
  } else {
    pairs = candidates
      .map((image): [ImageInput, string | null] => [image, parentFolder(image.path)])
      .sort(([a], [b]) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const loose = pairs.filter(([, label]) => label === null);
    if (loose.length > 0) {
      throw new DataError(
        `${baseName(loose[0]?.[0].path ?? "")}: images need a label: pick a folder with ` +
          "one sub-folder per label, or give a labels CSV",
      );
    }
  }
  if (pairs.length === 0) {
    throw new DataError(
      `no images found (${options.labelsCsv !== undefined ? "its labels file lists none" : "expected one sub-folder per label, or a labels CSV (file_name,label)"})`,
    );
  }
  const index = new Map(labelList.map((label, i) => [label, i]));
  if (labelled) {
    const unknown = [...new Set(pairs.map(([, l]) => l ?? ""))].filter((l) => !index.has(l));
    if (unknown.length > 0) {
      throw new DataError(
        `label(s) ${unknown.sort().map(quote).join(", ")} are not in the task's ` +
          `LABEL_LIST (${labelList.join(", ")})`,
      );
    }
  }
  const size = height * width * channels;
  const x = new Float32Array(pairs.length * size);
  const y = labelled ? new Float32Array(pairs.length) : null;
  const problems = new IssueList();
  for (const [i, [image, label]] of pairs.entries()) {
    const bitmap = await decode(image);
    try {
      if ((bitmap.width !== width || bitmap.height !== height) && !resize) {
        problems.add({
          file: image.path,
          message:
            `${baseName(image.path)}: image is ${bitmap.width}x${bitmap.height}, ` +
            `the task expects ${width}x${height}`,
        });
        continue;
      }
      const rgba = pixels(bitmap, width, height);
      const offset = i * size;
      for (let p = 0; p < height * width; p++) {
        const r = rgba[4 * p] ?? 0;
        const g = rgba[4 * p + 1] ?? 0;
        const b = rgba[4 * p + 2] ?? 0;
        if (channels === 1) {
          // PIL's "L" conversion: L = R*299/1000 + G*587/1000 + B*114/1000 (rounded)
          x[offset + p] = Math.round((r * 299 + g * 587 + b * 114) / 1000) / scale;
        } else {
          x[offset + 3 * p] = r / scale;
          x[offset + 3 * p + 1] = g / scale;
          x[offset + 3 * p + 2] = b / scale;
        }
      }
      if (y !== null) y[i] = index.get(label ?? "") ?? 0;
    } finally {
      bitmap.close();
    }
  }
  if (problems.count > 0) throw new DataError(problems.issues);
  return {
    kind: "image",
    size: pairs.length,
    sampleShape: [height, width, channels],
    x,
    y,
    numClasses: labelList.length > 0 ? labelList.length : undefined,
    sources: pairs.map(([image]) => image.path),
    notes: [],
  };
}
