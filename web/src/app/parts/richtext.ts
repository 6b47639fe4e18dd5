/**
 * Task texts may hold simple HTML (DISCO's tasks use <b>, <br>, <a>). Anyone may create a task,
 * so the text is parsed without running anything and only plain formatting is kept: no
 * attributes but http(s) link targets, no scripts, no styles, no images from elsewhere.
 */

const KEPT = new Set(["B", "STRONG", "I", "EM", "BR", "P", "UL", "OL", "LI", "CODE", "A"]);

function copy(source: Node, target: Node): void {
  for (const node of Array.from(source.childNodes)) {
    if (node.nodeType === Node.TEXT_NODE) {
      target.appendChild(document.createTextNode(node.textContent ?? ""));
    } else if (node instanceof Element) {
      if (!KEPT.has(node.tagName)) {
        if (node.tagName !== "SCRIPT" && node.tagName !== "STYLE") copy(node, target);
        continue;
      }
      const element = document.createElement(node.tagName.toLowerCase());
      if (node.tagName === "A") {
        const url = node.getAttribute("href") ?? "";
        if (/^https?:\/\//i.test(url)) {
          element.setAttribute("href", url);
          element.setAttribute("rel", "noopener noreferrer");
          element.setAttribute("target", "_blank");
        }
      }
      copy(node, element);
      target.appendChild(element);
    }
  }
}

/** The text's allowed formatting as DOM nodes (plain text stays plain). */
export function richText(html: string | undefined | null): DocumentFragment {
  const fragment = document.createDocumentFragment();
  if (!html) return fragment;
  const parsed = new DOMParser().parseFromString(html, "text/html");
  copy(parsed.body, fragment);
  return fragment;
}
