"use strict";
// The routing rule editor (webhooks/forms.py): "Add a condition" copies the last row, empty, with
// the next index, and raises the row count the server reads. Loaded as a file (the page's
// Content-Security-Policy allows no inline script); without it the editor's empty rows still work.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-conditions-editor]").forEach(function (editor) {
    const name = editor.dataset.name;
    const total = editor.querySelector("[data-conditions-total]");
    const body = editor.querySelector("tbody");
    const add = editor.querySelector("[data-add-condition]");
    if (!total || !body || !add) {
      return;
    }
    add.hidden = false;
    add.addEventListener("click", function () {
      const rows = body.querySelectorAll("[data-condition-row]");
      const last = rows[rows.length - 1];
      const index = Number(total.value);
      const number = rows.length + 1;
      const row = last.cloneNode(true);
      const prefix = new RegExp("^(id_)?" + name + "-\\d+-");
      row.dataset.index = String(index);
      row.querySelector("[data-number]").textContent = String(number);
      row.querySelectorAll("input, select").forEach(function (input) {
        input.name = input.name.replace(prefix, name + "-" + index + "-");
        input.id = input.id.replace(prefix, "id_" + name + "-" + index + "-");
        const label = input.getAttribute("aria-label") || "";
        input.setAttribute("aria-label", label.replace(/^Condition \d+/, "Condition " + number));
        if (input.type === "checkbox") {
          input.checked = false;
        } else if (input.tagName === "SELECT") {
          input.selectedIndex = 0;
        } else {
          input.value = "";
        }
      });
      body.appendChild(row);
      total.value = String(index + 1);
      row.querySelector("input").focus();
    });
  });
});
