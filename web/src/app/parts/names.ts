/** Words for DISCO's settings, as a person reads them. */

export function dataTypeName(dataType: string): string {
  switch (dataType) {
    case "tabular":
      return "Table (CSV)";
    case "image":
      return "Images";
    case "text":
      return "Text";
    default:
      return dataType;
  }
}

export function schemeName(scheme: string): string {
  switch (scheme) {
    case "federated":
      return "Federated (through this server)";
    case "decentralized":
      return "Decentralized (browser to browser)";
    case "local":
      return "Local only";
    default:
      return scheme;
  }
}

/** What a waiting participant is waiting for, in words. */
export function waitingText(
  reason: string,
  figures: { participants?: number; contributions?: number; minParticipants?: number; deadlineMs?: number | null },
): string {
  const { contributions, minParticipants, deadlineMs } = figures;
  switch (reason) {
    case "connecting":
      return "Connecting to the server…";
    case "participants": {
      const { participants } = figures;
      if (contributions !== undefined && minParticipants !== undefined && participants !== undefined
          && participants >= minParticipants) {
        return (
          `Waiting for the other participants to send their model ` +
          `(${contributions} of the ${minParticipants} needed have arrived).`
        );
      }
      if (contributions !== undefined && minParticipants !== undefined) {
        const missing = Math.max(1, minParticipants - contributions);
        return (
          `Waiting for ${missing} more ${missing === 1 ? "person" : "people"} to join ` +
          `(${contributions} of ${minParticipants} needed have sent their model). ` +
          "Ask someone else to open this page and train with their data."
        );
      }
      return "Waiting for more people to join.";
    }
    case "contributions":
      return (
        "Enough people have sent their model; waiting a moment for the others" +
        (deadlineMs !== undefined && deadlineMs !== null ? ` (at most ${Math.ceil(deadlineMs / 1000)} s)` : "") +
        "."
      );
    case "aggregation":
      return "The server is combining everyone's models…";
    case "peers":
      return "Waiting for enough other browsers to be ready for the next round.";
    default:
      return "Waiting…";
  }
}

/** Where a federated round stands, seen from the server (the dashboard). */
export function roundText(status: {
  waitingFor: string;
  contributions: number;
  minParticipants: number;
  deadlineMs: number | null;
}): string {
  switch (status.waitingFor) {
    case "participants":
      return `Collecting models: ${status.contributions} of the ${status.minParticipants} needed for this round received.`;
    case "contributions":
      return (
        `${status.contributions} models received; waiting for the other participants` +
        (status.deadlineMs !== null ? ` (at most ${Math.ceil(status.deadlineMs / 1000)} s).` : ".")
      );
    case "aggregation":
      return `Combining ${status.contributions} models…`;
    default:
      return "";
  }
}
