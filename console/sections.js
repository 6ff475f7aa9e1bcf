// The console's sections, in the order of its navigation.
//
// A section shows when the API behind the console has the route it reads (capabilities.json lists
// the paths of the API's OpenAPI document): a section for schedules or notifications is one more
// entry here, with `needs: "/schedules"` or `"/notifications"`, and appears once the API has them.

import { openMessage, openMessages } from "./messages.js";
import { openTargets } from "./targets.js";

export const SECTIONS = [
  {
    id: "messages",
    title: "Messages",
    needs: "/messages",
    open: (main, route, context) =>
      route.parts.length > 1 ? openMessage(main, route.parts[1], context) : openMessages(main, route, context),
  },
  { id: "targets", title: "Targets", needs: "/targets", open: openTargets },
];

export function availableSections(capabilities) {
  return SECTIONS.filter((section) => capabilities.paths.includes(section.needs));
}
