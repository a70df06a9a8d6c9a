// The login page's only script: checks the token by loading the console with it, keeps
// it in sessionStorage (this tab only), and runs the console. Holds no data itself.
(function () {
  'use strict';
  var KEY = 'marketgate.admin.token';
  var form = document.getElementById('login');
  var input = document.getElementById('token');
  var error = document.getElementById('login-error');

  function showLogin(message) {
    document.getElementById('login-view').hidden = false;
    document.getElementById('app').hidden = true;
    error.textContent = message || '';
    input.focus();
  }

  function start(token) {
    error.textContent = '';
    fetch('console/app.js', {
      headers: { Authorization: 'Bearer ' + token },
      cache: 'no-store',
      credentials: 'omit'
    }).then(function (r) {
      if (r.status === 401) throw new Error('That token was not accepted.');
      if (!r.ok) throw new Error('The console could not be loaded (HTTP ' + r.status + ').');
      return r.text();
    }).then(function (code) {
      sessionStorage.setItem(KEY, token);
      input.value = '';
      document.getElementById('login-view').hidden = true;
      var s = document.createElement('script');
      s.textContent = code; // allowed by the page's CSP hash of exactly this script
      document.body.appendChild(s);
    }).catch(function (e) {
      sessionStorage.removeItem(KEY);
      showLogin(e.message);
    });
  }

  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var t = input.value.trim();
    if (t) start(t);
  });
  var saved = sessionStorage.getItem(KEY);
  if (saved) start(saved); else showLogin('');
})();
