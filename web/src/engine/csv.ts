/**
 * A CSV reader with the behaviour of Python's `csv.reader` (default dialect), so that the engine
 * numbers lines and splits cells exactly as the Python client does: quoted cells may hold
 * commas, doubled quotes and line breaks; a blank line is an empty record.
 */

/** One record and its `line`: the file line it ends on (Python's `reader.line_num`). */
export interface CSVRecord {
  cells: string[];
  line: number;
}

/** Every record of `text`, cells as strings (a leading byte-order mark is dropped). */
export function parseCSV(text: string): CSVRecord[] {
  if (text.startsWith("\uFEFF")) text = text.slice(1);
  const records: CSVRecord[] = [];
  let line = 1;
  let record: string[] = [];
  let cell = "";
  let quoted = false; // inside a quoted section
  let touched = false; // the current record has content (a cell or a separator)
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          cell += '"';
          i++;
        } else {
          quoted = false;
        }
      } else {
        if (c === "\n" || (c === "\r" && text[i + 1] !== "\n")) line++;
        cell += c;
      }
      continue;
    }
    if (c === '"' && cell === "") {
      quoted = true;
      touched = true;
    } else if (c === ",") {
      record.push(cell);
      cell = "";
      touched = true;
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      if (touched || cell !== "") record.push(cell);
      records.push({ cells: record, line });
      line++;
      record = [];
      cell = "";
      touched = false;
    } else {
      cell += c;
      touched = true;
    }
  }
  if (touched || cell !== "") {
    record.push(cell);
    records.push({ cells: record, line });
  }
  return records;
}
