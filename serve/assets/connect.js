const token = new URLSearchParams(location.search).get('session_token');
for (const form of document.querySelectorAll('form[data-provider]')) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const status = document.getElementById('status');
    const body = { session_token: token, provider: form.dataset.provider, credentials: {}, connection_config: {} };
    for (const input of form.querySelectorAll('input')) {
      const dot = input.name.indexOf('.');
      body[input.name.slice(0, dot)][input.name.slice(dot + 1)] = input.value;
    }
    const button = form.querySelector('button');
    button.disabled = true;
    status.className = ''; status.textContent = 'Checking with the provider…';
    try {
      const response = await fetch('/connect/api/connections', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      const answer = await response.json();
      if (response.ok) {
        status.className = 'ok'; status.textContent = 'Connected';
        form.remove();
        // Only to the app origin named when the session was made: a
        // wildcard would tell any page that opened this one the new id.
        const origin = document.getElementById('opener').dataset.origin;
        const parent = window.opener || (window.parent !== window ? window.parent : null);
        if (parent && origin) parent.postMessage({ type: 'connect', connectionId: answer.connection_id, providerConfigKey: answer.provider_config_key }, origin);
      } else {
        status.className = 'error'; status.textContent = answer.error ? answer.error.message : 'Saving failed';
      }
    } catch (e) {
      status.className = 'error'; status.textContent = 'The server could not be reached: ' + e.message;
    } finally { button.disabled = false; }
  });
}
