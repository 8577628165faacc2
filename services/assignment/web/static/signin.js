// A sign-in link (/ui/login#token=bt_...) signs in as if the token had been pasted.
// The token rides in the fragment, which browsers never send to a server (no access log,
// no Referer); it is removed from the address bar before the form is posted.
(function () {
  "use strict";
  var match = /^#token=(bt_[A-Za-z0-9_-]+)$/.exec(window.location.hash);
  var form = document.getElementById("sign-in");
  if (!match || !form) {
    return;
  }
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  form.elements.token.value = match[1];
  form.submit();
})();
