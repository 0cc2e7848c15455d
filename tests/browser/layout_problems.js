// What a person would see as broken on an admin page at the window's width: an object
// tool's button drawn over the text of the title or subtitle, a list that needs horizontal
// scrolling, a cell whose text is clipped. Returns one line per problem.
() => {
  const problems = [];
  const overlaps = (a, b) =>
    a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const textBox = (element) => {
    const range = document.createRange();
    range.selectNodeContents(element);
    return range.getBoundingClientRect();
  };
  const headings = [...document.querySelectorAll("#content > h1, #content > h2")];
  for (const tool of document.querySelectorAll(".object-tools a")) {
    for (const heading of headings) {
      if (overlaps(tool.getBoundingClientRect(), textBox(heading))) {
        problems.push(`"${tool.innerText.trim()}" covers the ${heading.tagName} "${heading.innerText.trim()}"`);
      }
    }
  }
  const results = document.querySelector("#changelist .results");
  if (results && results.scrollWidth > results.clientWidth + 1) {
    problems.push(`the list is ${results.scrollWidth}px wide in ${results.clientWidth}px: it scrolls`);
  }
  for (const cell of document.querySelectorAll("#result_list th, #result_list td")) {
    const box = cell.getBoundingClientRect();
    if (box.right > window.innerWidth + 1 || cell.scrollWidth > cell.clientWidth + 1) {
      problems.push(`cut off: "${cell.innerText.trim()}"`);
    }
  }
  return problems;
}
