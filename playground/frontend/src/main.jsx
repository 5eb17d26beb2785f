// The playground's entry point: reads the server's settings from the page, then mounts the app.
import { createRoot } from "react-dom/client";

import { App } from "./App.jsx";

const settings = JSON.parse(document.getElementById("playground-settings").textContent);
createRoot(document.getElementById("playground")).render(<App settings={settings} />);
