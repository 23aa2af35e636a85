"""Test helper: Debian's headless Chromium driven over the DevTools protocol (websocket-client).

    with Browser() as br:
        br.goto('http://127.0.0.1:8080/')
        br.wait_js('document.body.dataset.live >= 1')
        rows = br.js('document.querySelectorAll("#rigs tbody tr").length')
        br.screenshot('/tmp/x.png')

A fresh --user-data-dir and the flags that keep Chromium off the network (it hangs on a closed
network otherwise). The process is killed on exit.
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import websocket

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--disable-default-apps', '--disable-extensions', '--hide-scrollbars', '--mute-audio',
         '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0']


class Browser:
    def __init__(self, width=1400, height=900, timeout_s=30.0):
        self.dir = tempfile.mkdtemp(prefix='hp-chromium-')
        self.proc = subprocess.Popen(
            [CHROMIUM] + FLAGS + ['--user-data-dir=' + self.dir, '--window-size=%d,%d' % (width, height),
                                  'about:blank'],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, 'stderr.log'), 'wb'))
        self.msg_id = 0
        self.ws = None
        try:
            self._connect(timeout_s)
        except BaseException:
            self.close()
            raise

    def _connect(self, timeout_s):
        port_file = os.path.join(self.dir, 'DevToolsActivePort')
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('chromium exited with %s' % self.proc.returncode)
            try:
                with open(port_file) as f:
                    port = int(f.readline())
                with urllib.request.urlopen('http://127.0.0.1:%d/json' % port, timeout=5) as r:
                    pages = [t for t in json.load(r) if t.get('type') == 'page']
                if pages:
                    self.ws = websocket.create_connection(pages[0]['webSocketDebuggerUrl'], timeout=timeout_s,
                                                          suppress_origin=True)
                    self.call('Page.enable')
                    self.call('Runtime.enable')
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError('chromium DevTools did not come up')

    def call(self, method, **params):
        self.msg_id += 1
        mid = self.msg_id
        self.ws.send(json.dumps({'id': mid, 'method': method, 'params': params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get('id') == mid:
                if 'error' in msg:
                    raise RuntimeError('%s: %s' % (method, msg['error']))
                return msg.get('result', {})

    def goto(self, url):
        self.call('Page.navigate', url=url)
        self.wait_js('document.readyState === "complete" && location.href === %s' % json.dumps(url), 20)

    def js(self, expr):
        r = self.call('Runtime.evaluate', expression=expr, returnByValue=True, awaitPromise=True)
        if 'exceptionDetails' in r:
            raise RuntimeError('JS error in %s: %s' % (expr, r['exceptionDetails']))
        return r['result'].get('value')

    def wait_js(self, expr, timeout_s=30.0, what=None):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.js('!!(%s)' % expr):
                    return
            except RuntimeError:
                pass
            time.sleep(0.2)
        raise AssertionError('timed out after %.0f s waiting for %s' % (timeout_s, what or expr))

    def screenshot(self, path, full_page=False, clip=None):
        params = {'format': 'png'}
        if clip:
            params['clip'] = {'x': 0, 'y': 0, 'width': clip[0], 'height': clip[1], 'scale': 1}
        if full_page:
            m = self.call('Page.getLayoutMetrics')['cssContentSize']
            params['clip'] = {'x': 0, 'y': 0, 'width': m['width'], 'height': m['height'], 'scale': 1}
            params['captureBeyondViewport'] = True
        data = base64.b64decode(self.call('Page.captureScreenshot', **params)['data'])
        with open(path, 'wb') as f:
            f.write(data)
        return data

    def close(self):
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
