// Binds the task families drawn from a user's data (data_tasks.hpp): the checks that the data
// can fill every task, and the one copy of it each family keeps.
#include "arrays.hpp"
#include "checks.hpp"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "metafast/tasks.hpp"

namespace metafast::bindings {
namespace {

// A private, checked copy of a 2-D float array (rows x width), in its own dtype.
std::shared_ptr<const RowTable> table_of(const py::array& a, const char* name, py::ssize_t rows) {
    return dispatch_dtype(a, name, [&](auto zero) {
        using T = decltype(zero);
        std::vector<Dim> dims{{rows, "rows"}, {-1, "width"}};
        const T* data = checked_data<T>(a, name, dims);
        const std::size_t n = element_count(dims);
        check_finite(name, data, n);
        return std::make_shared<const RowTable>(std::vector<T>(data, data + n), static_cast<std::size_t>(dims[1].size));
    });
}

const std::int64_t* ids_of(const py::array& a, const char* name, std::vector<Dim> dims) {
    return checked_data<std::int64_t>(a, name, dims);
}

// Groups the rows by id (labels or task ids), one group per id of `chosen` in its order, each
// group's rows in row order; every chosen id must occur, once, with at least `minimum` rows.
std::shared_ptr<const RowGroups> groups_of(const std::int64_t* ids, std::size_t rows, const py::array& chosen_array,
                                           const char* chosen_name, const char* group, std::size_t minimum,
                                           const std::string& why) {
    std::vector<Dim> dims{{-1, "groups"}};
    const std::int64_t* chosen = checked_data<std::int64_t>(chosen_array, chosen_name, dims);
    const auto count = static_cast<std::size_t>(dims[0].size);
    // Positions of the chosen ids, sorted by id, to find a row's group by binary search.
    std::vector<std::pair<std::int64_t, std::size_t>> order(count);
    for (std::size_t g = 0; g < count; ++g) order[g] = {chosen[g], g};
    std::sort(order.begin(), order.end());
    for (std::size_t g = 1; g < count; ++g)
        require(order[g].first != order[g - 1].first,
                std::string(chosen_name) + " must not repeat a " + group + ", got " +
                    std::to_string(order[g].first) + " twice");
    std::vector<std::size_t> group_of_row(rows, count), sizes(count, 0);
    for (std::size_t r = 0; r < rows; ++r) {
        const auto it = std::lower_bound(order.begin(), order.end(), std::make_pair(ids[r], std::size_t{0}));
        if (it != order.end() && it->first == ids[r]) {
            group_of_row[r] = it->second;
            ++sizes[it->second];
        }
    }
    auto groups = std::make_shared<RowGroups>();
    groups->offsets.assign(count + 1, 0);
    for (std::size_t g = 0; g < count; ++g) {
        require(sizes[g] > 0, std::string(chosen_name) + ": " + group + " " + std::to_string(chosen[g]) +
                                  " does not occur in the data");
        require(sizes[g] >= minimum, std::string(group) + " " + std::to_string(chosen[g]) + " has " +
                                         std::to_string(sizes[g]) + " rows, but " + why);
        groups->offsets[g + 1] = groups->offsets[g] + sizes[g];
    }
    groups->rows.resize(groups->offsets[count]);
    std::vector<std::size_t> filled(groups->offsets.begin(), groups->offsets.end() - 1);
    for (std::size_t r = 0; r < rows; ++r)
        if (group_of_row[r] < count) groups->rows[filled[group_of_row[r]]++] = r;
    return groups;
}

// The image handling of a Classification family: rows of channels x side x side pixels, turned
// by up to rotations - 1 quarter turns and shifted by up to max_shift pixels.
ImageAugmentation augmentation(const RowTable& table, std::int64_t channels, std::int64_t side,
                               std::int64_t rotations, std::int64_t max_shift) {
    require(rotations >= 1 && rotations <= 4, "rotations must lie in [1, 4] (quarter turns 0 .. rotations - 1), got " +
                                                  std::to_string(rotations));
    require(max_shift >= 0, "shift must be >= 0 pixels, got " + std::to_string(max_shift));
    ImageAugmentation images{};
    images.rotations = static_cast<std::size_t>(rotations);
    images.max_shift = static_cast<std::size_t>(max_shift);
    if (images.copies_rows()) return images;
    require(channels > 0 && side > 0 && static_cast<std::size_t>(channels * side * side) == table.width(),
            "rotations and shift need square images: features of shape (rows, C, H, H), got rows of " +
                std::to_string(table.width()) + " values");
    require(max_shift < side, "shift must be below the images' side of " + std::to_string(side) + " pixels, got " +
                                  std::to_string(max_shift));
    images.channels = static_cast<std::size_t>(channels);
    images.side = static_cast<std::size_t>(side);
    return images;
}

// The chosen classes grouped by `within` (a group id per row; every row of a class in one
// group), for episodes whose classes all come from one group.
std::shared_ptr<const ClassGroups> class_groups(const std::int64_t* within, const RowGroups& classes,
                                                std::size_t ways, std::size_t rotations) {
    std::vector<std::pair<std::int64_t, std::size_t>> group_of_class(classes.groups());
    for (std::size_t c = 0; c < classes.groups(); ++c) {
        const std::int64_t group = within[classes.row(c, 0)];
        for (std::size_t i = 1; i < classes.size(c); ++i)
            require(within[classes.row(c, i)] == group,
                    "within must give every row of a class the same group: rows " +
                        std::to_string(classes.row(c, 0)) + " and " + std::to_string(classes.row(c, i)) +
                        " of one class are in groups " + std::to_string(group) + " and " +
                        std::to_string(within[classes.row(c, i)]));
        group_of_class[c] = {group, c};
    }
    std::sort(group_of_class.begin(), group_of_class.end());  // by group, then class: a fixed order
    auto grouped = std::make_shared<ClassGroups>();
    grouped->members.offsets.push_back(0);
    std::size_t largest = 0;
    for (std::size_t c = 0; c < group_of_class.size(); ++c) {
        grouped->members.rows.push_back(group_of_class[c].second);
        if (c + 1 == group_of_class.size() || group_of_class[c + 1].first != group_of_class[c].first) {
            const std::size_t g = grouped->members.offsets.size() - 1;
            grouped->members.offsets.push_back(grouped->members.rows.size());
            largest = std::max(largest, grouped->members.size(g));
            if (grouped->members.size(g) * rotations >= ways) grouped->eligible.push_back(g);
        }
    }
    require(!grouped->eligible.empty(),
            "a task takes ways = " + std::to_string(ways) + " classes of one group (within), but the largest group "
            "has " + std::to_string(largest) + " of the chosen classes" +
                (rotations > 1 ? " (" + std::to_string(largest * rotations) + " with their rotations)" : std::string()));
    return grouped;
}

std::size_t rows_of(const py::array& a, const char* name) {
    require(a.ndim() >= 1 && a.shape(0) > 0, std::string(name) + " must hold at least one row, got shape " +
                                                 shape_text(a));
    return static_cast<std::size_t>(a.shape(0));
}

// A pool's per-task array (tasks, rows, width) as a table of tasks * rows rows.
std::shared_ptr<const RowTable> pool_table(const py::array& a, const char* name, py::ssize_t tasks) {
    require(a.ndim() == 3, std::string(name) + " must have shape (tasks, rows, width), got " + shape_text(a));
    py::array rows = py::reinterpret_borrow<py::array>(a).reshape({a.shape(0) * a.shape(1), a.shape(2)});
    return table_of(rows, name, tasks * a.shape(1));
}

std::shared_ptr<const std::vector<std::int64_t>> pool_labels(const py::array& a, const char* name, py::ssize_t tasks,
                                                             py::ssize_t rows, std::int64_t classes) {
    std::vector<Dim> dims{{tasks, ""}, {rows, ""}};
    const std::int64_t* labels = ids_of(a, name, dims);
    const std::size_t n = element_count(dims);
    for (std::size_t i = 0; i < n; ++i)
        require(labels[i] >= 0 && labels[i] < classes,
                std::string(name) + " must hold class labels in [0, " + std::to_string(classes) + "), got " +
                    std::to_string(labels[i]) + " at flat index " + std::to_string(i));
    return std::make_shared<const std::vector<std::int64_t>>(labels, labels + n);
}

}  // namespace

void register_data_tasks(py::module_& m) {
    py::class_<Classification>(m, "Classification")
        .def(py::init([](const py::array& features, const py::array& labels, const py::array& classes,
                         std::int64_t ways, std::int64_t shots, std::int64_t query, std::int64_t channels,
                         std::int64_t side, std::int64_t rotations, std::int64_t max_shift,
                         const py::array& within) {
                 const std::size_t rows = rows_of(features, "features");
                 const auto n = static_cast<py::ssize_t>(rows);
                 const std::int64_t* ids = ids_of(labels, "labels", {{n, "rows"}});
                 auto table = table_of(features, "features", n);
                 require(ways >= 2 && ways <= std::int64_t{1} << 24,
                         "ways must lie in [2, 16777216], got " + std::to_string(ways));
                 const std::size_t k = checked_count(shots, "shots", max_tasks), q = checked_count(query, "query", max_tasks);
                 auto groups = groups_of(ids, rows, classes, "classes", "class", k + q,
                                         "a task takes shots + query = " + std::to_string(k + q) + " of each class");
                 const ImageAugmentation images = augmentation(*table, channels, side, rotations, max_shift);
                 std::shared_ptr<const ClassGroups> episode_groups;
                 if (within.size() > 0) {
                     episode_groups = class_groups(ids_of(within, "within", {{n, "rows"}}), *groups,
                                                   static_cast<std::size_t>(ways), images.rotations);
                 } else {
                     const std::size_t drawable = groups->groups() * images.rotations;
                     require(drawable >= static_cast<std::size_t>(ways),
                             "a task takes ways = " + std::to_string(ways) + " classes, but only " +
                                 std::to_string(groups->groups()) + " are chosen" +
                                 (images.rotations > 1 ? " (" + std::to_string(drawable) + " with their rotations)"
                                                       : std::string()));
                 }
                 return Classification{std::move(table), std::move(groups), static_cast<std::size_t>(ways), k, q,
                                       images, std::move(episode_groups)};
             }),
             "features"_a, "labels"_a, "classes"_a, "ways"_a, "shots"_a, "query"_a, "channels"_a = 0, "side"_a = 0,
             "rotations"_a = 1, "max_shift"_a = 0, "within"_a = py::array_t<std::int64_t>(0));

    py::class_<Regression>(m, "Regression")
        .def(py::init([](const py::array& x, const py::array& y, const py::array& task_ids, const py::array& tasks,
                         std::int64_t support, std::int64_t query) {
                 const std::size_t rows = rows_of(x, "x");
                 const auto n = static_cast<py::ssize_t>(rows);
                 const std::int64_t* ids = ids_of(task_ids, "task_ids", {{n, "rows"}});
                 auto inputs = table_of(x, "x", n);
                 auto targets = table_of(y, "y", n);
                 const std::size_t s = checked_count(support, "support", max_tasks);
                 const std::size_t q = checked_count(query, "query", max_tasks);
                 auto groups = groups_of(ids, rows, tasks, "tasks", "task", s + q,
                                         "a task takes support + query = " + std::to_string(s + q) + " of its rows");
                 return Regression{std::move(inputs), std::move(targets), std::move(groups), s, q};
             }),
             "x"_a, "y"_a, "task_ids"_a, "tasks"_a, "support"_a, "query"_a);

    py::class_<TaskPool>(m, "TaskPool")
        .def(py::init([](const py::array& x_support, const py::array& y_support, const py::array& x_query,
                         const py::array& y_query, std::int64_t classes) {
                 const auto tasks = static_cast<py::ssize_t>(rows_of(x_support, "x_support"));
                 TaskPool pool{};
                 pool.x_support = pool_table(x_support, "x_support", tasks);
                 pool.x_query = pool_table(x_query, "x_query", tasks);
                 const py::ssize_t support = x_support.shape(1), query = x_query.shape(1);
                 const bool labels = classes > 0;
                 if (labels) {
                     pool.labels_support = pool_labels(y_support, "y_support", tasks, support, classes);
                     pool.labels_query = pool_labels(y_query, "y_query", tasks, query, classes);
                 } else {
                     require(y_support.ndim() == 3, "y_support must have shape (tasks, rows, width), got " +
                                                        shape_text(y_support));
                     pool.y_support = pool_table(y_support, "y_support", tasks);
                     pool.y_query = pool_table(y_query, "y_query", tasks);
                 }
                 require(pool.x_query->width() == pool.x_support->width() &&
                             (labels || pool.y_query->width() == pool.y_support->width()),
                         "support and query sets must have the same input and output widths");
                 require(labels || (pool.y_support->rows() == pool.x_support->rows() &&
                                    pool.y_query->rows() == pool.x_query->rows()),
                         "y_support and y_query must have as many rows as x_support and x_query");
                 const std::size_t outputs = labels ? static_cast<std::size_t>(classes) : pool.y_support->width();
                 pool.tasks = static_cast<std::size_t>(tasks);
                 pool.shape = {pool.x_support->width(), outputs, static_cast<std::size_t>(support),
                               static_cast<std::size_t>(query), labels};
                 return pool;
             }),
             "x_support"_a, "y_support"_a, "x_query"_a, "y_query"_a, "classes"_a,
             "A pool of tasks; classes > 0: labels in [0, classes), 0: float targets.");
}

}  // namespace metafast::bindings
