// Only a help: shows the code as XXXX-XXXX while it is typed. The form works
// without it, and the server accepts the code in any case, with or without dashes.
(function () {
  "use strict";
  var input = document.getElementById("user_code");
  if (!input) {
    return;
  }
  input.addEventListener("input", function () {
    if (input.selectionStart !== input.value.length) {
      return; // a correction in the middle: leave the text and the cursor alone
    }
    var letters = input.value.toUpperCase().replace(/[^A-Z]/g, "").slice(0, 8);
    input.value = letters.length > 4 ? letters.slice(0, 4) + "-" + letters.slice(4) : letters;
  });
})();
